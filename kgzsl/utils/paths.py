"""Where kgzsl finds the files it ships and where it keeps the graphs it builds.

Shipped files (run configs, wnid lists) live at the top of a repository checkout (``configs/``,
``graph_data/wnids/``), where people look for them; a built wheel carries the same files inside
the package (``kgzsl/data/configs``, ``kgzsl/data/wnids``, mapped there at build time by
``setup.py``). :func:`shipped_dir` finds whichever is present.

Graphs follow one rule, the same for ``kgzsl build-graph --out`` and ``graph.path`` in a config
(:func:`resolve_graph_dir`): a value with a path separator (``./g``, ``graphs/g``, ``/data/g``) or
naming an existing folder of the current directory is that folder; a bare name (``imagenet1k_21k``)
is a folder in the graph data folder (:func:`graph_data_dir`): ``$KGZSL_GRAPH_DATA``, else
``./graph_data`` when the current directory has one (a checkout), else ``graph_data/`` in the user
data folder (:func:`data_home`). Nothing is ever written inside the installed package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kgzsl.errors import InputError, NotFoundError

__all__ = ["PACKAGE_DIR", "shipped_dir", "shipped_names", "data_home", "graph_data_dir", "resolve_graph_dir",
           "resolve_config"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
_IN_REPO = {"configs": Path("configs"), "wnids": Path("graph_data") / "wnids"}
_SUFFIX = {"configs": ".yaml", "wnids": ".txt"}


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` files (``"configs"`` or ``"wnids"``).

    Raises:
        ValueError: If ``kind`` is not one of them.
    """
    if kind not in _IN_REPO:
        raise ValueError(f"unknown kind of shipped files {kind!r}; choose one of {', '.join(_IN_REPO)}")
    inside = PACKAGE_DIR / "data" / kind
    return inside if inside.is_dir() else PACKAGE_DIR.parent / _IN_REPO[kind]


def shipped_names(kind: str) -> dict[str, Path]:
    """The shipped ``kind`` files by name (``{"dgp": .../dgp.yaml}``, ``{"imagenet1k": .../imagenet1k.txt}``)."""
    folder = shipped_dir(kind)
    return {p.stem: p for p in sorted(folder.glob(f"*{_SUFFIX[kind]}"))} if folder.is_dir() else {}


def data_home() -> Path:
    """The user data folder: ``$KGZSL_HOME``, else ``$XDG_DATA_HOME/kgzsl`` (``~/.local/share/kgzsl``).

    On Windows the default is ``%LOCALAPPDATA%\\kgzsl``. The folder is not created here.
    """
    env = os.environ.get("KGZSL_HOME")
    if env:
        return Path(env).expanduser().absolute()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "kgzsl"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser().absolute() / "kgzsl"


def graph_data_dir() -> Path:
    """Where bare graph names live (absolute).

    ``$KGZSL_GRAPH_DATA`` if set; else ``./graph_data`` if the current directory has that folder
    (a repository checkout); else ``data_home() / "graph_data"``.
    """
    env = os.environ.get("KGZSL_GRAPH_DATA")
    if env:
        return Path(env).expanduser().absolute()
    local = Path("graph_data")
    return local.absolute() if local.is_dir() else data_home() / "graph_data"


def _is_path(spec: str) -> bool:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(s in spec for s in seps) or spec.startswith((".", "~")) or Path(spec).is_dir()


def resolve_graph_dir(spec: str | os.PathLike) -> Path:
    """The absolute folder a graph name or path stands for (see the module docstring for the rule).

    Args:
        spec: A bare name (``"imagenet1k_21k"``: a folder of :func:`graph_data_dir`), or a path
            (``"./g"``, ``"graphs/g"``, ``"/data/g"``, or the name of a folder that exists in the
            current directory), relative to the current directory.

    Raises:
        ValueError: If ``spec`` is empty.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise InputError("empty graph name or path; give a name (imagenet1k_21k) or a folder (./my_graph)")
    return Path(text).expanduser().absolute() if _is_path(text) else graph_data_dir() / text


def resolve_config(spec: str | os.PathLike) -> Path:
    """The YAML file a ``--config`` value stands for: an existing file wins, else a shipped config name.

    ``"dgp"``, ``"dgp.yaml"`` and, in a checkout, ``"configs/dgp.yaml"`` all give the shipped DGP
    config; from any other folder ``configs/dgp.yaml`` is a path like any other.

    Raises:
        FileNotFoundError: If ``spec`` is neither an existing file nor a shipped config name; the
            message lists the shipped names.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = shipped_names("configs")
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if os.fspath(spec) in (name, path.name) and name in shipped:
        return shipped[name]
    where = f", in {next(iter(shipped.values())).parent}" if shipped else ""
    raise NotFoundError(f"config file not found: {spec}; give a YAML file's path or name a shipped config "
                        f"(--config {' | '.join(shipped) or 'NAME'}{where})")
