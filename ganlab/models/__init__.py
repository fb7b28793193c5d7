"""LightningModules: the shared GAN loop (base.py) and one thin subclass per variant."""
