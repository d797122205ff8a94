"""The built wheel works outside the repository: it carries the shipped configs and wnid lists, and its
``kgzsl`` command builds a graph from an empty folder, writing there and never into site-packages.

Slow-ish (a wheel build, a venv, one WordNet graph of 1,000 classes: about 10-20 s); it runs in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from kgzsl._version import __version__

from conftest import requires_wordnet

pytestmark = [pytest.mark.slow, pytest.mark.wheel]

REPO = Path(__file__).resolve().parents[1]
#: what the wheel is built from: the package and the top-level files setup.py maps into it
SOURCES = ["pyproject.toml", "setup.py", "README.md", "LICENSE", "kgzsl", "configs", "graph_data/wnids"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    import setuptools

    if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (77, 0):
        pytest.fail(f"setuptools {setuptools.__version__} cannot build this wheel (pyproject.toml needs >= 77); "
                    "install the test extra (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, src / name)
    out = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
                "--verbose", "--disable-pip-version-check", "-w", str(root / "dist")], cwd=root)
    # nothing left to setuptools' fallbacks, which it warns it will drop (data folders, licence tables)
    assert "absent from the `packages` configuration" not in out.stdout + out.stderr
    assert "SetuptoolsDeprecationWarning" not in out.stdout + out.stderr
    (built,) = (root / "dist").glob("kgzsl-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed, seeing this environment's packages (torch, nltk, ...).

    ``venv --system-site-packages`` made from a venv's python sees the base interpreter's packages,
    not this venv's, so a ``.pth`` file adds this environment's site-packages instead. Its own
    ``.pth`` files (the editable install of the checkout) are not processed there.
    """
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=env_dir.parent)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=env_dir).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_kgzsl_test_parent.pth").write_text("\n".join(ours) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
          "--disable-pip-version-check", str(wheel)], cwd=env_dir.parent)
    return env_dir


def test_the_wheel_carries_the_shipped_files_and_ranges(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"kgzsl-{__version__}.dist-info/METADATA").decode()
    shipped = {f"kgzsl/data/configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")}
    shipped |= {f"kgzsl/data/wnids/{p.name}" for p in (REPO / "graph_data" / "wnids").iterdir()}
    assert shipped <= names and "kgzsl/data/wnids/NOTICE.md" in names and "kgzsl/data/configs/dgp.yaml" in names
    assert "kgzsl/data/lexnames" in names and "kgzsl/utils/paths.py" in names
    assert "kgzsl/py.typed" in names  # type checkers read the annotations of the installed package (PEP 561)
    page = {f"kgzsl/serve/static/{p.name}" for p in (REPO / "kgzsl" / "serve" / "static").iterdir()}
    assert {"kgzsl/serve/static/index.html", "kgzsl/serve/static/app.js"} <= page <= names  # kgzsl serve's page
    assert not any(n.startswith(("tests/", "configs/", "graph_data/")) for n in names)
    assert any(n.startswith(f"kgzsl-{__version__}.dist-info/") and n.endswith("/LICENSE") for n in names), \
        sorted(n for n in names if ".dist-info/" in n)  # the MIT licence the metadata declares
    assert "License-Expression: MIT AND Apache-2.0" in metadata  # the code, and the wnid lists from timm
    assert "License-File: graph_data/wnids/NOTICE.md" in metadata
    requires = [line.split(":", 1)[1].split(";")[0].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    assert not any(r.startswith("timm") for r in requires)
    assert "torch>=2.4" in requires and not any("==" in r for r in requires), requires  # ranges, not pins


@requires_wordnet
def test_the_installed_wheel_builds_a_graph_from_an_empty_folder(venv, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KGZSL_GRAPH_DATA", "PYTHONHOME")}
    env["KGZSL_HOME"] = str(empty / "home")
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python, kgzsl = str(bin_dir / "python"), str(bin_dir / "kgzsl")
    where = _run([python, "-c", "import json, kgzsl, sys; print(kgzsl.__file__); print(json.dumps(sys.path))"],
                 cwd=empty, env=env)
    package = Path(where.stdout.splitlines()[0]).parent
    assert package.is_relative_to(venv) and package.name == "kgzsl", where.stdout  # the wheel's copy, not the repo
    # the repo itself is not importable (its .venv's site-packages may be, for the dependencies)
    assert all(Path(p or empty).resolve() != REPO for p in json.loads(where.stdout.splitlines()[1]))
    assert _run([kgzsl, "--version"], cwd=empty, env=env).stdout.strip() == f"kgzsl {__version__}"
    before = sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts)

    out = _run([kgzsl, "build-graph", "--wnids", "imagenet1k"], cwd=empty, env=env)
    graph = empty / "home" / "graph_data" / "custom"
    assert f"graph {graph}: " in out.stdout and "(1000 requested + ancestors)" in out.stdout
    assert (graph / "manifest.json").is_file() and (graph / "nodes.tsv").is_file()
    assert sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts) == before

    # `train --config dgp` finds the shipped config; a graph name that is not built yet is an error naming the
    # command (nothing is built behind the user's back)
    bad = subprocess.run([kgzsl, "-q", "train", "--config", "dgp", "graph.path=g_small"], cwd=empty, env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "kgzsl build-graph --wnids imagenet1k,imagenet21k --out g_small" in bad.stderr
    assert sorted(p.name for p in empty.iterdir()) == ["home"]
    assert sorted(p.name for p in (empty / "home" / "graph_data").iterdir()) == ["custom"]
