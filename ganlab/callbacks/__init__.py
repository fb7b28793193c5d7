"""Lightning callbacks driven by the module's `nimg` (real images shown)."""
