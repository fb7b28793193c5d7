"""`python -m ganlab.evaluate`: the old path of ganlab.cli.evaluate (`ganlab-evaluate`), kept so
that commands and imports naming `ganlab.evaluate` still work. Importing it gives that module."""

import sys

from ganlab.cli import evaluate

if __name__ == "__main__":
    evaluate.cli()
sys.modules[__name__] = evaluate
