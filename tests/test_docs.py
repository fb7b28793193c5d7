"""README.md and docs/*.md stay true: every ganlab command line in a code block composes with
Hydra (training and evaluation) or parses with its tool's argument parser; every relative link
resolves; every config key named in backticks exists in the config composed with its group."""

from __future__ import annotations

import importlib
import re
import shlex
from functools import cache
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from ganlab.cli.evaluate import allow_data_overrides

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`\n]+)`")
TRAIN = ("ganlab.run", "ganlab.cli.train", "ganlab-train")
EVALUATE = ("ganlab.evaluate", "ganlab.cli.evaluate", "ganlab-evaluate")
TOOLS = {  # command -> module whose parse_args / main parses its command line
    "generate": "ganlab.cli.generate", "fid": "ganlab.cli.fid", "report": "ganlab.cli.report",
    "quality": "ganlab.cli.quality", "bench": "ganlab.bench.cli", "data.bench": "ganlab.data.bench",
    "metrics.shapes_features": "ganlab.metrics.shapes_features",
}
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir()) + ["eval"]
FILES = {"json", "yaml", "md", "py", "png", "ckpt", "csv", "log", "npz", "txt", "html", "pt"}


def commands() -> list[tuple[str, list[str]]]:
    """(page: line, argv) of every ganlab command in the pages' shell code blocks."""
    found = []
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text()):
            if lang not in ("bash", "sh", ""):
                continue
            for line in body.replace("\\\n", " ").splitlines():
                line = line.strip()
                if line.startswith(("python -m ganlab", "ganlab-")):
                    argv = shlex.split(line, comments=True)
                    found.append((f"{page.name}: {line[:60]}", argv))
    return found


def tool_of(argv: list[str]) -> tuple[str, list[str]]:
    """('ganlab.run', args) for `python -m ganlab.run ...`, ('ganlab-train', args), ..."""
    if argv[0] == "python":
        return argv[2], argv[3:]
    return argv[0], argv[1:]


def first_of_sweeps(args: list[str]) -> list[str]:
    """A multirun's `key=a,b,c` as `key=a` (compose takes one value per key)."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",")[0]
        out.append(f"{key}{sep}{value}")
    return out


def compose_args(name: str, args: list[str]) -> DictConfig:
    overrides, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-m", "--multirun", "--help"):
            continue
        elif arg in ("--cfg", "-c"):
            skip = True
        elif arg == "--config-dir":
            raise AssertionError("a --config-dir command belongs to tests/test_extending.py")
        else:
            overrides.append(arg)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=first_of_sweeps(overrides), return_hydra_config=True)


@pytest.mark.slow  # one Hydra composition per command: about 0.3 s each
@pytest.mark.parametrize("where,argv", commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_composes_or_parses(where, argv):
    tool, args = tool_of(argv)
    if "--config-dir" in args:  # the extension guide's own config folder: tests/test_extending.py
        return
    if tool in TRAIN:
        compose_args("train", args)
    elif tool in EVALUATE:
        compose_args("eval", allow_data_overrides(args))
    else:
        name = tool.removeprefix("ganlab-").removeprefix("ganlab.").removeprefix("cli.")
        assert name in TOOLS, f"{where}: no check for the tool {tool}"
        module = importlib.import_module(TOOLS[name])
        if hasattr(module, "parse_args"):
            try:
                module.parse_args(args)
            except SystemExit as error:  # argparse's error
                raise AssertionError(f"{where}: {argv} does not parse") from error
        else:
            with pytest.raises(SystemExit) as exit_info:
                module.main(["--help"])
            assert exit_info.value.code == 0


def test_commands_were_found():
    tools = {tool_of(argv)[0] for _, argv in commands()}
    assert {"ganlab.run", "ganlab-train", "ganlab-generate", "ganlab.evaluate"} <= tools


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: broken link {target}"


@cache
def known_keys() -> frozenset[str]:
    """Every key the configs can hold, as dotted paths: the union over every YAML file of conf/,
    each under its package (group `model/augment` -> `model.augment.`, `# @package _global_` ->
    the root, a defaults entry `/group@_global_.PATH: option` -> PATH), plus Hydra's own keys
    with the Optuna sweeper and the SLURM launcher selected. A group's keys are those of any of
    its options (e.g. `model.schedule.*` comes with model=pggan)."""
    keys: set[str] = set()
    for path in sorted(CONF.rglob("*.yaml")):
        group = path.parent.relative_to(CONF).as_posix()
        text = path.read_text()
        glob = group == "." or "# @package _global_" in text
        node = OmegaConf.to_container(OmegaConf.create(text), resolve=False) or {}
        for entry in node.pop("defaults", None) or []:
            for target, option in (entry.items() if isinstance(entry, dict) else []):
                source, _, package = target.removeprefix("override ").partition("@_global_.")
                if package and option:  # e.g. /callbacks@_global_.callbacks.stage_grids
                    option_file = CONF / source.strip("/") / f"{option}.yaml"
                    sub = OmegaConf.to_container(OmegaConf.load(option_file), resolve=False)
                    keys |= set(flatten(sub, package))
        keys |= set(flatten(node, "" if glob else group.replace("/", ".")))
    cfg = compose_args("train", ["hparams_search=optuna_fid", "hydra/launcher=slurm"])
    keys |= {k for k in flatten(OmegaConf.to_container(cfg.hydra, resolve=False), "hydra")}
    return frozenset(keys)


def flatten(node: object, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    out = [prefix] if prefix else []
    for key, value in node.items():
        out += flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def named_keys(text: str) -> set[str]:
    """`group.key...` spans (and the key of `group.key=value`) naming a config key; `+key` adds
    a key, so it is not named here."""
    keys = set()
    for span in SPAN.findall(text):
        for word in span.split():
            key = word.split("=")[0].rstrip(",.:;)")
            last = key.rsplit(".", 1)[-1]
            if last.isupper() or last in FILES:  # a placeholder (data.KEY) or a file name
                continue
            if re.fullmatch(rf"(?:{'|'.join(GROUPS)})(?:\.\w+)+", key):
                keys.add(key)
    return keys


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_config_key_exists(page):
    text = page.read_text()
    if page.name == "extending.md":  # its keys belong to the guide's own config folder
        text = FENCE.sub("", text)
    missing = sorted(k for k in named_keys(text) if k not in known_keys())
    assert not missing, f"{page.name} names keys that no composed config has: {missing}"


def test_key_check_knows_group_specific_keys():
    keys = known_keys()
    assert {"model.schedule.stabilize_kimg", "loss.gp_weight", "model.augment.target",
            "eval.split", "metric.num_fake", "data.root"} <= keys
    assert "data.pin_memory" not in keys
