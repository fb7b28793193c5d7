"""The package's layout holds: plumbing (and the checkpoint format) < the training core, data,
nets, augment, metrics < models, callbacks < training.fit / scoring < the tools (cli, bench). A
module imports nothing above its layer, a tool no other tool, and no module-level import cycle
exists. The old flat paths (ganlab/run.py, ...) are aliases, outside the layers."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ganlab"
ALIASES = {"ganlab.run", "ganlab.losses", "ganlab.resume", "ganlab.checkpoints", "ganlab.evaluate",
           "ganlab.generate", "ganlab.fid", "ganlab.quality", "ganlab.report"}
LAYERS = (  # (module prefix, layer), the longest matching prefix wins
    ("ganlab", 0), ("ganlab.utils", 0), ("ganlab.logs", 0), ("ganlab.lightning_api", 0),
    ("ganlab.loggers", 0), ("ganlab.multirun", 0), ("ganlab.extras", 0),
    ("ganlab.training.checkpoints", 0),  # the checkpoint format: a leaf every reader may use
    ("ganlab.training.losses", 1), ("ganlab.training.resume", 1),
    ("ganlab.data", 1), ("ganlab.nets", 1),
    ("ganlab.augment", 1), ("ganlab.metrics", 1),
    ("ganlab.models", 2), ("ganlab.callbacks", 2),
    ("ganlab.training.fit", 3), ("ganlab.training.scoring", 3), ("ganlab.training", 3),
    ("ganlab.cli", 4), ("ganlab.bench", 4),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    return max((p for p in LAYERS if name == p[0] or name.startswith(p[0] + ".")),
               key=lambda p: len(p[0]))[1]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported ganlab module, at module level?) of the file; `from ganlab import x` names
    the module ganlab.x when x is one."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test).endswith("TYPE_CHECKING")
                   for stmt in block.body for n in ast.walk(stmt)}  # annotations only
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            names += [f"{node.module}.{a.name}" for a in node.names
                      if (PACKAGE.parent / node.module.replace(".", "/") / a.name).exists()
                      or (PACKAGE.parent / f"{node.module.replace('.', '/')}/{a.name}.py").exists()]
        for name in names:
            if name.startswith("ganlab") and id(node) not in typing_only:
                found.append((name, id(node) in top))
    return found


@cache
def graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))
            if module_name(p) not in ALIASES}


def test_no_module_imports_a_layer_above_it_or_another_tool():
    bad = []
    for name, targets in graph().items():
        for target, _ in targets:
            if target in ALIASES:
                bad.append(f"{name} imports the old path {target}")
            elif layer(target) > layer(name):
                bad.append(f"{name} (layer {layer(name)}) imports {target} ({layer(target)})")
            elif name.startswith("ganlab.cli.") and target.startswith("ganlab.cli."):
                tool, other = name.split(".")[2], target.split(".")[2]
                if tool != other:
                    bad.append(f"tool {name} imports tool {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_at_module_level():
    edges = {name: {t for t, top in targets if top and t != name}
             for name, targets in graph().items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):]
                                                                     + [nxt]))
            if nxt in edges and not state.get(nxt):
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in edges:
        if not state.get(node):
            visit(node, [node])


def test_every_module_has_a_layer_and_the_walk_saw_them():
    names = graph()
    assert len(names) > 60 and "ganlab.cli.train" in names and "ganlab.training.fit" in names
    for name in names:
        layer(name)


def test_old_module_paths_stand_for_the_moved_modules():
    """`_target_: ganlab.losses.Hinge` in an old checkpoint's config, `from ganlab.run import
    train` in a user's script and `python -m ganlab.evaluate` keep working."""
    import importlib

    from hydra.utils import get_class, get_method

    from ganlab.training import losses

    assert get_class("ganlab.losses.Hinge") is losses.Hinge
    moved = {"ganlab.losses": "ganlab.training.losses", "ganlab.resume": "ganlab.training.resume",
             "ganlab.checkpoints": "ganlab.training.checkpoints",
             "ganlab.evaluate": "ganlab.cli.evaluate", "ganlab.generate": "ganlab.cli.generate",
             "ganlab.fid": "ganlab.cli.fid", "ganlab.quality": "ganlab.cli.quality",
             "ganlab.report": "ganlab.cli.report"}
    for old, new in moved.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    assert get_method("ganlab.run.train") is get_method("ganlab.training.fit.train")
    assert get_method("ganlab.run.main") is get_method("ganlab.cli.train.main")
    assert set(moved) | {"ganlab.run"} == ALIASES
