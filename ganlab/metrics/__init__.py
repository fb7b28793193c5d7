"""Evaluation: FID (and KID, IS) on torch-fidelity's InceptionV3, the real-statistics cache, and
the training callback (evaluator.py)."""
