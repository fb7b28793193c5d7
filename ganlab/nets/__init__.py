"""Generators and discriminators (no training logic)."""
