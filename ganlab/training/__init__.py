"""The training core: one run built from its config and fitted (fit.py), the loss objects
(losses.py), what exact resume saves (resume.py), reading checkpoints (checkpoints.py) and
scoring a generator with the training evaluator (scoring.py). The GAN LightningModule loop itself
is ganlab/models/base.py; the growth schedule is ganlab/models/pggan.py with
ganlab/callbacks/progressive.py.

Empty on purpose: `import ganlab.training.losses` does not import Lightning through fit.py."""
