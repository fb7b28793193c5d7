"""Datamodules: one shared base (base.py) and one small class per dataset."""
