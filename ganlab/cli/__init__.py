"""The user-facing tools, one module each (console scripts in pyproject.toml): train (the Hydra
entry point), generate, evaluate, fid, quality, report. A tool imports shared code from below
(ganlab.training, metrics, data, ...), never another tool's module."""
