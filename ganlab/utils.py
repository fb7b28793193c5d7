"""Small shared helpers: input checks that fail early with a message naming the fix."""

from __future__ import annotations

import math


class ConfigError(ValueError):
    """A configuration value is invalid; raised before any training starts."""


def is_power_of_two(value: int) -> bool:
    return isinstance(value, int) and value > 0 and (value & (value - 1)) == 0


def check_resolution(
    resolution: int, low: int = 4, high: int = 1024, name: str = "resolution"
) -> int:
    """Return `resolution` if it is a power of two in [low, high], else raise ConfigError."""
    if not is_power_of_two(resolution) or not low <= resolution <= high:
        powers = ", ".join(str(2**k) for k in range(int(math.log2(low)), int(math.log2(high)) + 1))
        raise ConfigError(
            f"{name}={resolution!r} is not supported: it must be a power of two between {low} and "
            f"{high} ({powers}). Set e.g. `data.resolution=64`."
        )
    return resolution


def check_positive(value: float, name: str) -> float:
    """Return `value` if it is a number > 0, else raise ConfigError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(
            f"{name}={value!r} must be a positive number; set `{name}=` to a value > 0."
        )
    return value


def check_int(value: object, name: str, low: int, allow_none: bool = False) -> None:
    """Raise ConfigError unless `value` is an integer >= low (or None when allowed; not a bool)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}")


def next_multiple(nimg: int, every: int) -> int:
    """The first multiple of `every` (images) after `nimg`: when an interval callback fires next."""
    return (nimg // every + 1) * every


def log2_int(value: int) -> int:
    """log2 of a power of two, as int."""
    return int(math.log2(value))
