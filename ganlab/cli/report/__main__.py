"""`python -m ganlab.cli.report` (also `python -m ganlab.report`, `ganlab-report`)."""

import sys

from ganlab.cli.report import main

sys.exit(main())
