"""`python -m ganlab.bench`."""

from ganlab.bench.cli import main

main()
