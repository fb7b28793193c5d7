"""`python -m ganlab.run`: the old path of the training entry point ganlab.cli.train
(`ganlab-train`), kept so that commands, sweeps and `from ganlab.run import train` still work."""

from ganlab.cli.train import main
from ganlab.training.fit import (  # noqa: F401 - the names `ganlab.run` had
    MetricMissingError,
    build,
    check_resume,
    continue_run,
    keep_freed_memory,
    metric_value,
    set_tf32,
    train,
)

if __name__ == "__main__":
    main()
