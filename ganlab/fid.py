"""`python -m ganlab.fid`: the old path of ganlab.cli.fid (`ganlab-fid`), kept so
that commands and imports naming `ganlab.fid` still work. Importing it gives that module."""

import sys

from ganlab.cli import fid

if __name__ == "__main__":
    sys.exit(fid.main())
sys.modules[__name__] = fid
