"""The package's layers: each module imports only from its own layer or the layers below it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kgzsl"

# lowest first; a module may import from its own layer and any layer listed before it
LAYERS = [
    ("kgzsl._version", "kgzsl.errors", "kgzsl.utils"),
    ("kgzsl.graph",),
    ("kgzsl.text",),
    ("kgzsl.models",),
    ("kgzsl.vision",),
    ("kgzsl.training",),
    ("kgzsl.inference",),
    ("kgzsl.tasks",),
    ("kgzsl.serve",),
    ("kgzsl.cli",),
]
TOP = {"kgzsl", "kgzsl.__main__"}  # the public API and `python -m kgzsl` sit above every layer


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every kgzsl module imported anywhere in the file (lazy imports inside functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "kgzsl"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "kgzsl":
            found.append((node.lineno, node.module))
    return found


def _modules():
    return [(p, _module_name(p)) for p in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_has_a_layer():
    assert [m for _, m in _modules() if m not in TOP and _layer(m) is None] == []


def test_no_module_imports_from_a_layer_above_it():
    problems = []
    for path, module in _modules():
        if module in TOP:
            continue
        own = _layer(module)
        for lineno, target in _imports(path):
            level = _layer(target)
            if level is None or level > own:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{lineno} ({LAYERS[own][0]}) imports {target}")
    assert problems == [], "\n".join(problems)


def test_at_most_eight_modules_directly_under_the_package():
    assert len(list(PACKAGE.glob("*.py"))) <= 8


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from kgzsl.cli import main\n")
    assert _imports(bad) == [(2, "kgzsl.cli")] and _layer("kgzsl.cli") > _layer("kgzsl.graph")
