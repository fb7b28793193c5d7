"""Config fuzzing: every leaf key of the composed config of every model preset (and the data
groups shapes and folder), set one at a time to a value of the wrong kind, either trains (one
tiny iteration) or stops before training with one line naming the key, the value and what is
allowed (a ConfigError: exit code 2 on the command line).

Cases: each key gets every wrong value (a string, a negative number, zero, NaN, an empty list,
null) once, in one preset that has it (presets taken in turn), so every key of every preset is
covered while the run stays at a few minutes. The counts of keys, cases and outcomes are
printed (pytest -s shows them).
"""

from __future__ import annotations

import copy
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig, ListConfig, open_dict
from PIL import Image

from ganlab.run import MetricMissingError, train
from ganlab.training.config_schema import leaves
from ganlab.utils import ConfigError
from tests.conftest import compose_config

pytestmark = pytest.mark.slow

PRESETS = ["dcgan", "dcgan_small", "sagan", "sagan_thesis", "pggan", "pggan_thesis"]
WRONG = ["abc", -1, 0, math.nan, [], None]  # a string, negative, zero, NaN, empty list, null
# one tiny iteration on the CPU (batch 16 at 16 px, narrow nets, 2 optimizer calls)
BASE = ["debug=tiny", "trainer.accelerator=cpu", "logger=csv", "kimg=0.032",
        "trainer.max_steps=2", "extras.print_config=false", "metric.num_real=32",
        "metric.batch_size=32", "metric.every_kimg=0.016", "metric.kid_subset_size=16"]
PGGAN_TINY = ["model.schedule.stabilize_kimg=0.016", "model.schedule.fade_kimg=0.016",
              "model.schedule.batch_size_dict=null", "model.generator.width=8",
              "model.discriminator.width=8"]
SAGAN_TINY = ["model.generator.attention=[8]", "model.discriminator.attention=[8]",
              "model.attention_every_kimg=0.016"]

def write_images(root: Path, num: int = 40) -> Path:
    """A folder of `num` small random PNGs (the folder data group's input)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for index in range(num):
        pixels = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{index}.png")
    return root


def base_configs(tmp_path: Path) -> dict[str, list[str]]:
    """Overrides of each fuzzed base: every model preset on shapes (metric=shapes), and the
    folder data group (metric=none: the shapes metric scores shapes only)."""
    bases = {}
    for preset in PRESETS:
        extra = PGGAN_TINY if preset.startswith("pggan") else []
        extra += SAGAN_TINY if preset.startswith("sagan") else []
        bases[preset] = [f"model={preset}", "metric=shapes", *BASE, *extra]
    folder = write_images(tmp_path / "images")
    bases["dcgan_small+folder"] = ["data=folder", f"data.root={folder}", "metric=none",
                                   *[b for b in BASE if not b.startswith("metric.")],
                                   "data.resolution=16", "data.batch_size=8"]
    return bases


def wrong_values(value) -> list:
    """The wrong values for a key: those of another kind than `value`, and the out-of-range
    numbers; a value equal to the default itself is no case."""
    out = []
    for wrong in WRONG:
        same = wrong == value and type(wrong) is type(value)
        if isinstance(value, (list, ListConfig)) and wrong == []:
            same = len(value) == 0
        if not same:
            out.append(wrong)
    return out


def run_case(cfg: DictConfig, key: str, parent: DictConfig, name, value, out: Path):
    """One case: cfg with key=value, trained in-process. Returns (outcome, detail)."""
    cfg = copy.deepcopy(cfg)
    node = cfg
    for part in key.split(".")[:-1]:
        node = node[part]
    with open_dict(cfg):
        node[name] = value
        if key != "paths.output_dir":
            cfg.paths.output_dir = str(out)
    try:
        train(cfg)
    except MetricMissingError:  # after training: the 2 tiny iterations logged no evaluation
        return "trained", ""
    except ConfigError as error:
        message = str(error)
        shown = {repr(value), str(value)} | ({"not set", "null"} if value is None else set())
        named = str(name) in message and any(s in message for s in shown)
        if "\n" in message or not named:
            return "bad message", message
        return "config error", message
    except Exception as error:  # noqa: BLE001 - every other exception is a failure of the case
        first = str(error).splitlines()[0] if str(error) else ""
        return "crash", f"{type(error).__name__}: {first}"
    return "trained", ""


def test_every_key_trains_or_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fuzzed relative path lands in tmp_path
    os.environ.setdefault("WANDB_MODE", "offline")
    bases = base_configs(tmp_path)
    keys_by_base: dict[str, list[str]] = {}
    composed: dict[str, DictConfig] = {}
    for label, overrides in bases.items():
        composed[label] = compose_config(overrides, tmp_path / label / "base")
        keys_by_base[label] = [k for k, _, _ in leaves(composed[label])]
    all_keys = sorted({k for keys in keys_by_base.values() for k in keys})

    # every key in turn in the bases that have it (round robin): all keys covered once
    owner: dict[str, str] = {}
    turn = Counter()
    for key in all_keys:
        having = [label for label, keys in keys_by_base.items() if key in keys]
        label = min(having, key=lambda b: (turn[b], list(bases).index(b)))
        owner[key], turn[label] = label, turn[label] + 1

    outcomes, failures, records, number = Counter(), [], [], 0
    for label in bases:
        cfg = compose_config(bases[label], tmp_path / label / "base")  # HydraConfig of the base
        for key, parent, name in leaves(cfg):
            if owner.get(key) != label:
                continue
            value = parent._get_node(name)._value()
            for wrong in wrong_values(value):
                number += 1
                outcome, detail = run_case(cfg, key, parent, name, wrong,
                                           tmp_path / label / f"case{number}")
                outcomes[outcome] += 1
                records.append(f"{label}\t{key}\t{wrong!r}\t{outcome}\t{detail}")
                if outcome in ("crash", "bad message"):
                    failures.append(f"[{label}] {key}={wrong!r}: {outcome}: {detail}")
    print(f"\nconfig fuzz: {len(all_keys)} keys over {len(bases)} bases "
          f"({', '.join(f'{b} {len(k)}' for b, k in keys_by_base.items())}), {number} cases: "
          + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    for line in failures:
        print("  " + line)
    if os.environ.get("GANLAB_FUZZ_LOG"):  # every case's outcome, one tab-separated line each
        Path(os.environ["GANLAB_FUZZ_LOG"]).write_text("\n".join(records) + "\n")
    assert not failures, f"{len(failures)} cases crashed or ended without a one-line message"
