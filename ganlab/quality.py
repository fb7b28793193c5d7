"""`python -m ganlab.quality`: the old path of ganlab.cli.quality (`ganlab-quality`), kept so
that commands and imports naming `ganlab.quality` still work. Importing it gives that module."""

import sys

from ganlab.cli import quality

if __name__ == "__main__":
    sys.exit(quality.main())
sys.modules[__name__] = quality
