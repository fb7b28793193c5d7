"""`python -m ganlab.generate`: the old path of ganlab.cli.generate (`ganlab-generate`), kept so
that commands and imports naming `ganlab.generate` still work. Importing it gives that module."""

import sys

from ganlab.cli import generate

if __name__ == "__main__":
    sys.exit(generate.main())
sys.modules[__name__] = generate
