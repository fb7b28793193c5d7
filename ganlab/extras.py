"""Start-of-run conveniences (the `extras` config group) and run tags.

- `run_tags(cfg)`: the top-level `tags` plus the task name, deduplicated; they reach W&B as run
  tags (conf/logger/wandb.yaml reads `${tags}`), TensorBoard / CSV as part of the logged
  hyperparameters (the resolved config), and RUN_DIR/tags.log (`write_tags`).
- `apply_extras(cfg)`: `extras.print_config` prints the resolved config as a rich tree (also
  saved as RUN_DIR/config_tree.log); `extras.enforce_tags=true` warns when a run has no tags
  (off by default: tags are optional).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ganlab.logs import get_logger

log = get_logger(__name__)

TREE_ORDER = ("data", "model", "loss", "trainer", "callbacks", "metric", "logger", "paths")


def run_tags(cfg: DictConfig) -> list[str]:
    """`tags` (a list, or one string) plus `task_name`, in order, without duplicates."""
    tags = cfg.get("tags") or []
    tags = [tags] if isinstance(tags, str) else [str(t) for t in tags]
    return list(dict.fromkeys([*tags, str(cfg.get("task_name", "train"))]))


def write_tags(cfg: DictConfig, tags: list[str]) -> Path:
    """RUN_DIR/tags.log: one tag per line."""
    path = Path(cfg.paths.output_dir) / "tags.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{tag}\n" for tag in tags))
    return path


def config_tree(cfg: DictConfig):
    """The resolved config as a rich Tree: the main groups first, then the top-level keys."""
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    groups = [k for k in TREE_ORDER if isinstance(cfg.get(k), DictConfig)]
    groups += [k for k in cfg if k not in groups and isinstance(cfg[k], DictConfig)]
    scalars = {k: cfg[k] for k in cfg if k not in groups}
    for key, value in [("run", OmegaConf.create(scalars)), *((k, cfg[k]) for k in groups)]:
        text = OmegaConf.to_yaml(value, resolve=True).rstrip()
        tree.add(key).add(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    return tree


def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Print the tree to the terminal and, if given, save it as plain text."""
    import rich
    from rich.console import Console

    tree = config_tree(cfg)
    rich.print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as f:
            Console(file=f, width=120, color_system=None).print(tree)


def apply_extras(cfg: DictConfig) -> list[str]:
    """Warn on missing tags, print the config (per `extras`), set `cfg.tags` to `run_tags`,
    write tags.log; returns the tags."""
    extras = cfg.get("extras") or {}
    if extras.get("enforce_tags") and not cfg.get("tags"):
        log.warning("this run has no tags: add some to find it later, e.g. tags=[baseline,lr2e-4] "
                    "(extras.enforce_tags=false silences this)")
    tags = run_tags(cfg)
    with open_dict(cfg):
        cfg.tags = tags
    if extras.get("print_config"):
        print_config_tree(cfg, Path(cfg.paths.output_dir) / "config_tree.log")
    write_tags(cfg, tags)
    return tags
