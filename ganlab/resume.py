"""Old import path of ganlab.training.resume (moved there); kept so that user code and old
checkpoints' `_target_`s naming `ganlab.resume` still work. Importing it gives that module."""

import sys

from ganlab.training import resume

sys.modules[__name__] = resume
