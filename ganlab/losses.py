"""Old import path of ganlab.training.losses (moved there); kept so that user code and old
checkpoints' `_target_`s naming `ganlab.losses` still work. Importing it gives that module."""

import sys

from ganlab.training import losses

sys.modules[__name__] = losses
