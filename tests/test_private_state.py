"""Classes own their state: no module assigns to (or deletes) another object's private attribute."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kgzsl"
OWNERS = {"self", "cls"}


def _private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def _writes_to_private(source: str) -> list[tuple[int, str]]:
    """``(line, target)`` of each write to ``X._name`` where X is not ``self``/``cls`` (setattr included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr)):
            targets = [node.target]
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            obj, name = (node.args + [None, None])[:2]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and _private(name.value) and \
                    not (isinstance(obj, ast.Name) and obj.id in OWNERS):
                found.append((node.lineno, f"{node.func.id}({ast.unparse(obj)}, {name.value!r})"))
            continue
        else:
            continue
        for target in targets:
            for sub in ast.walk(target):  # tuple targets and chains (a.b._c) included
                if isinstance(sub, ast.Attribute) and _private(sub.attr) and \
                        not (isinstance(sub.value, ast.Name) and sub.value.id in OWNERS):
                    found.append((sub.lineno, ast.unparse(sub)))
    return sorted(found)


def test_no_module_writes_another_objects_private_attributes():
    problems = [f"{path.relative_to(PACKAGE.parent)}:{line}: assigns {target}"
                for path in sorted(PACKAGE.rglob("*.py"))
                for line, target in _writes_to_private(path.read_text(encoding="utf-8"))]
    assert problems == [], "give the owning class a public method instead:\n" + "\n".join(problems)


def test_the_checker_sees_each_kind_of_write():
    source = """
clf._heads = {}
graph._stored_ancestors += 1
a, b.c._d = 1, 2
del clf._cache
setattr(clf, "_state", 1)
for clf._i in range(3): pass
self._mine = 1
cls._registry = {}
func.__doc__ = "dunder names are public protocol"
setattr(self, "_own", 1)
clf.public = 1
"""
    assert [t for _, t in _writes_to_private(source)] == [
        "clf._heads", "graph._stored_ancestors", "b.c._d", "clf._cache", "setattr(clf, '_state')", "clf._i"]
