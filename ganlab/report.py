"""`python -m ganlab.report`: the old path of ganlab.cli.report (`ganlab-report`), kept so
that commands and imports naming `ganlab.report` still work. Importing it gives that module."""

import sys

from ganlab.cli import report

if __name__ == "__main__":
    sys.exit(report.main())
sys.modules[__name__] = report
