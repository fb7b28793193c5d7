"""One validation layer for a composed training config, run before anything is built.

The spec of a leaf key is the kind of its default value (the config composed from the same group
choices without the user's key=value overrides: an int stays an int, a list a list, a non-null
value may not become null) refined by the declared `RULES` below (ranges, keys that may be null,
numbers written as integers that take fractions, free-form strings). A value that does not fit
stops the run with one line naming the key, the value and what is allowed (a ConfigError, exit
code 2), before any object is instantiated. Keys with no default (user additions) and values
that are interpolations (their source key is checked) pass through; a constructor's own checks
(choices of a string, powers of two) still apply after this layer.

Why this and not Hydra structured configs: ganlab's configs are plain YAML groups that users
extend with their own groups and `_target_`s; a dataclass per group would duplicate every YAML
default (and its comment) and would not cover a user's group. Deriving kinds from the defaults
covers every key, the user's included, with only the ranges declared by hand.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ganlab.utils import ConfigError

KINDS = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}
NOUNS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
         "list": "a list", "dict": "a mapping"}


@dataclass(frozen=True)
class Rule:
    """What a key allows. kinds: allowed kinds (empty: the default value's kind); low / high:
    inclusive bounds unless low_open / high_open; nullable: null allowed; items: the rule of
    each element of a list (length: its required length); skip: not checked here."""

    kinds: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    items: Rule | None = None
    length: int | None = None
    choices: tuple[Any, ...] = ()
    exclude: tuple[Any, ...] = ()
    skip: bool = False

    def describe(self, kinds: tuple[str, ...]) -> str:
        words = " or ".join(NOUNS.get(k, k) for k in kinds) or "a value"
        if set(kinds) <= set(NUMBER) and self.high is None and not self.exclude:
            if "float" in kinds and self.low == 0 and self.low_open:
                return "a positive number" + (", or null" if self.nullable else "")
            if kinds == ("int",) and self.low == 1 and not self.low_open:
                return "a positive integer" + (", or null" if self.nullable else "")
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if bounds:
            words += " " + " and ".join(bounds)
        if self.exclude:
            words += " except " + ", ".join(str(v) for v in self.exclude)
        if self.choices:
            words = "one of " + ", ".join(str(c) for c in self.choices)
        if self.length is not None:
            words += f" of {self.length}"
        if self.items is not None:
            words += f" ({self.items.describe(self.items.kinds)} each)"
        return words + (", or null" if self.nullable else "")


NUMBER = ("int", "float")
POSITIVE = Rule(NUMBER, low=0, low_open=True)
POSITIVE_INT = Rule(("int",), low=1)
COUNT = Rule(("int",), low=0)
FRACTION = Rule(NUMBER, low=0, high=1)
PATH = Rule(("str",))
# Declared rules, first match wins (fnmatch patterns over dotted keys).
RULES: tuple[tuple[str, Rule], ...] = (
    ("*_target_", Rule(("str",))),
    # Lightning's Trainer
    ("trainer.max_steps", Rule(("int",), low=-1, exclude=(0,))),  # -1: no limit; 0 trains nothing
    ("trainer.max_epochs", Rule(("int",), low=-1, exclude=(0,), nullable=True)),
    ("trainer.default_root_dir", PATH),
    ("trainer.log_every_n_steps", POSITIVE_INT),
    ("trainer.limit_val_batches", Rule(NUMBER, low=0)),
    ("trainer.num_sanity_val_steps", Rule(("int",), low=-1)),
    ("trainer.num_nodes", POSITIVE_INT),
    ("trainer.devices", Rule(("int", "str", "list"), low=-1, exclude=(0,))),  # -1: all
    ("trainer.accelerator", Rule(("str",))),
    ("trainer.strategy", Rule(("str",))),
    ("trainer.precision", Rule(("str", "int"), choices=(
        "32-true", "32", 32, "16-mixed", "16", 16, "bf16-mixed", "bf16", "bf16-true",
        "16-true", "64-true", "64", 64, "transformer-engine", "transformer-engine-float16"))),
    ("trainer.gradient_clip_val", Rule(NUMBER, low=0, nullable=True)),
    ("trainer.*", Rule()),
    ("*._convert_", Rule(("str",), choices=("none", "partial", "object", "all"))),
    ("paths.*", PATH),
    ("*.dirpath", PATH),
    ("*.save_dir", PATH),
    ("*.cache_dir", PATH),
    ("*.checkpoint_dir", Rule(("str",), nullable=True)),
    ("*.attention_dir", PATH),
    ("kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("seed", COUNT),
    ("*.seed", COUNT),
    ("*.sample_seed", COUNT),
    ("*.split_seed", COUNT),
    ("tf32", Rule(("bool",), nullable=True)),
    ("model.augment", Rule(("dict", "str"), nullable=True)),  # the group, or a mode name
    ("tags", Rule(("list", "str"), items=Rule(("str", "int", "float")))),
    ("task_name", Rule(("str",))),
    ("ckpt_path", Rule(("str",), nullable=True)),
    ("init_from", Rule(("str",), nullable=True)),
    ("optimized_metric", Rule(("str",), nullable=True)),
    # training length and intervals, kimg
    ("callbacks.stop.kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("callbacks.progress.kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("metric.stop_kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("model.total_kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("metric.every_kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("callbacks.checkpoint.snapshot_kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("*.every_kimg", POSITIVE),
    ("*.attention_every_kimg", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("model.schedule.*_kimg", Rule(NUMBER, low=0)),
    ("model.schedule.*_dict", Rule(("dict",), nullable=True)),
    ("model.schedule.batch_size_dict.*", POSITIVE_INT),
    ("model.ema_kimg", Rule(NUMBER, low=0)),
    ("model.ema_rampup", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("model.ema_phase_fraction", Rule(NUMBER, low=0, low_open=True, nullable=True)),
    ("model.ema_per_step", Rule(NUMBER, low=0, high=1, high_open=True, nullable=True)),
    ("callbacks.progress.refresh_s", Rule(NUMBER, low=0)),  # 0: redraw at every batch
    # optimisation
    ("model.lr_*", POSITIVE),
    ("model.betas", Rule(("list",), length=2, items=Rule(NUMBER, low=0, high=1, high_open=True))),
    ("model.n_critic", POSITIVE_INT),
    ("model.cond_weight", Rule(NUMBER, low=0)),
    ("model.labels", Rule(("dict",), nullable=True)),  # set by the run from the data
    ("model.compile_mode", Rule(("str",), nullable=True)),
    ("loss.label_smoothing", Rule(("list",), length=2, nullable=True, items=FRACTION)),
    ("loss.r1_gamma", Rule(NUMBER, low=0)),
    ("loss.gp_weight", Rule(NUMBER, low=0)),
    ("loss.drift", Rule(NUMBER, low=0)),
    ("loss.r1_interval", POSITIVE_INT),
    # sizes and counts
    ("*resolution", POSITIVE_INT),
    ("*.widths.*", POSITIVE_INT),
    ("*.width", POSITIVE_INT),
    ("*.max_width", POSITIVE_INT),
    ("*.z_dim", POSITIVE_INT),
    ("*batch_size", POSITIVE_INT),
    ("*.num_workers", COUNT),
    ("data.cache_workers", Rule(("int",), low=0, nullable=True)),  # 0: decode in-process
    ("data.max_images", Rule(("int",), low=1, nullable=True)),
    ("data.crop", Rule(("int",), low=1, nullable=True)),
    ("data.root", Rule(("str",), nullable=True)),
    ("data.val_fraction", Rule(NUMBER, low=0, high=1, low_open=True, high_open=True)),
    ("data.max_bad_fraction", FRACTION),
    ("metric.num_fake", Rule(("int",), low=2, nullable=True)),
    ("metric.num_real", Rule(("int",), low=2)),
    ("metric.kid_subset*", POSITIVE_INT),
    ("metric.weights_path", Rule(("str",), nullable=True)),
    ("metric.download_timeout", POSITIVE),
    ("metric.feature_extractor", Rule(("str", "dict"), nullable=True)),
    ("metric.data_target", Rule(("str",), nullable=True)),
    ("data.num_*", Rule(("int",), low=1, nullable=True)),  # folder / CelebA: null = all
    ("metric.num_*", POSITIVE_INT),
    ("model.num_samples", POSITIVE_INT),
    ("model.num_classes", COUNT),
    ("*.nrow", POSITIVE_INT),
    ("*.stop_sync_every", POSITIVE_INT),
    ("*.minibatch_stddev", COUNT),
    ("*.minibatch_discrimination", COUNT),
    ("*.minibatch_discrimination_dim", POSITIVE_INT),
    ("*.ema_bn_latents", COUNT),  # 0: off
    ("model.attention_query", Rule(("list",), length=2, items=FRACTION)),
    ("model.*.attention", Rule(("list",), items=POSITIVE_INT)),
)


GROUPS = ("data", "model", "loss", "trainer", "callbacks", "metric", "logger", "paths", "extras")
GROUP_NODE = Rule(("dict",), nullable=True)  # a config group, or one callback / logger of it


def rule_for(key: str) -> Rule | None:
    parts = key.split(".")
    if key in GROUPS or (len(parts) == 2 and parts[0] in ("callbacks", "logger")):
        return GROUP_NODE
    for pattern, rule in RULES:
        if fnmatch.fnmatchcase(key, pattern):
            return rule
    return None


def kind_of(value: Any) -> str | None:
    if isinstance(value, (DictConfig, dict)):
        return "dict"
    if isinstance(value, (ListConfig, list, tuple)):
        return "list"
    return KINDS.get(type(value))


def fits(value: Any, kinds: tuple[str, ...]) -> bool:
    kind = kind_of(value)
    return kind in kinds or (kind == "int" and "float" in kinds)


def problem(value: Any, rule: Rule, kinds: tuple[str, ...]) -> bool:
    """True if `value` breaks `rule` (with `kinds` the allowed kinds)."""
    if value is None:
        return not rule.nullable
    if kinds and not fits(value, kinds):
        return True
    if rule.choices:
        return value not in rule.choices
    if isinstance(value, float) and not math.isfinite(value):
        return True
    if rule.exclude and not isinstance(value, bool) and value in rule.exclude:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low):
            return True
        if rule.high is not None and (value >= rule.high if rule.high_open else value > rule.high):
            return True
    if isinstance(value, (list, ListConfig)):
        if rule.length is not None and len(value) != rule.length:
            return True
        if rule.items is not None:
            return any(problem(v, rule.items, rule.items.kinds) for v in value)
    return False


def leaves(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig, Any]]:
    """(dotted key, parent node, key in parent) of every leaf; nodes that are interpolations or
    null count as leaves."""
    for key in node:
        child = node._get_node(key)
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(child, DictConfig) and not child._is_interpolation() and not child._is_none():
            yield from leaves(child, path)
        else:
            yield path, node, key


def plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def defaults_of(reference: DictConfig | None, key: str) -> tuple[bool, Any]:
    """(found, default value) of `key` in the reference config."""
    if reference is None:
        return False, None
    parent_key, _, last = key.rpartition(".")
    parent = OmegaConf.select(reference, parent_key, throw_on_missing=False) if parent_key else (
        reference)
    if not isinstance(parent, DictConfig) or last not in parent:
        return False, None
    try:
        return True, plain(parent[last])
    except Exception:  # noqa: BLE001 - a default that does not resolve here (e.g. ${hydra:...})
        return False, None


def check_target(key: str, value: str) -> None:
    """A `_target_` must import and be a class or function."""
    from hydra.utils import get_object

    try:
        found = get_object(value)
        reason = None if callable(found) else f"it is a {type(found).__name__}, not callable"
    except Exception as error:  # noqa: BLE001 - any import failure: not a usable _target_
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if reason is not None:
        raise ConfigError(f"{key}={value!r} must be the dotted path of a class or function, "
                          f"e.g. ganlab.models.dcgan.DCGAN ({reason})")


def validate(cfg: DictConfig, reference: DictConfig | None) -> int:
    """Check every leaf of `cfg` against its spec; raise ConfigError on the first bad value.
    Returns the number of keys checked."""
    checked = 0
    for key, parent, name in leaves(cfg):
        if key.startswith("hydra.") or parent._get_node(name)._is_interpolation():
            continue
        rule = rule_for(key)
        found, default = defaults_of(reference, key)
        if (rule is None or rule.skip) and not found:
            continue
        rule = rule or Rule()
        kinds = rule.kinds or ((kind_of(default),) if default is not None else ())
        kinds = tuple(k for k in kinds if k)
        try:
            value = plain(parent[name])
        except Exception as error:  # noqa: BLE001 - an interpolation that does not resolve
            raise ConfigError(f"{key} does not resolve: {error}".splitlines()[0]) from None
        if found and default is None and not rule.kinds:  # null where the default is null
            rule = replace(rule, nullable=True)
        empty = value == "" and default != ""  # an empty string only where it is the default
        if empty or problem(value, rule, kinds):
            allowed = rule.describe(kinds)
            raise ConfigError(f"{key}={value!r} must be {allowed}")
        if key.endswith("_target_") and isinstance(value, str):
            check_target(key, value)
        checked += 1
    return checked


def group_overrides(choices: dict[str, Any]) -> list[str]:
    """The config group choices of a run as overrides (Hydra's own groups left out)."""
    out = []
    for group, option in choices.items():
        if group.startswith("hydra") or "@" in group or option is None:
            continue
        out.append(f"{group}={'null' if option is None else option}")
    return out


@lru_cache(maxsize=16)
def _compose_reference(config_name: str, overrides: tuple[str, ...]) -> DictConfig | None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        if GlobalHydra.instance().is_initialized():  # inside @hydra.main: its search path
            return compose(config_name, overrides=list(overrides))
        from ganlab import config_dir

        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    except Exception:  # noqa: BLE001 - a user's group not found here: rules only
        return None


def reference_config() -> DictConfig | None:
    """The defaults of this run's group choices (None when Hydra has not configured the run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices)
    name = hydra_cfg.job.config_name or "train"
    reference = _compose_reference(name, tuple(group_overrides(choices)))
    return reference


def check_config(cfg: DictConfig) -> int:
    """Validate a composed run config against the defaults of its group choices and RULES."""
    return validate(cfg, reference_config())
