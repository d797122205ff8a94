"""Where kgzsl finds the files it ships: run configs and wnid lists.

In a repository checkout they live at the top level (``configs/``, ``graph_data/wnids/``), where
people look for them; a built wheel carries the same files inside the package
(``kgzsl/data/configs``, ``kgzsl/data/wnids``). :func:`shipped_dir` finds whichever is present.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["shipped_dir", "PACKAGE_DIR"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_IN_REPO = {"configs": Path("configs"), "wnids": Path("graph_data") / "wnids"}


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` files (``"configs"`` or ``"wnids"``).

    Raises:
        ValueError: If ``kind`` is not one of them.
    """
    if kind not in _IN_REPO:
        raise ValueError(f"unknown kind of shipped files {kind!r}; choose one of {', '.join(_IN_REPO)}")
    inside = PACKAGE_DIR / "data" / kind
    return inside if inside.is_dir() else PACKAGE_DIR.parent / _IN_REPO[kind]
