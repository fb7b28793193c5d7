"""Old import path of ganlab.training.checkpoints (moved there); kept so that user code and old
checkpoints' `_target_`s naming `ganlab.checkpoints` still work. Importing it gives that module."""

import sys

from ganlab.training import checkpoints

sys.modules[__name__] = checkpoints
