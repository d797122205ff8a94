"""What the ``kgzsl`` command prints besides its result: ``-q`` leaves only kgzsl's own warnings and
errors (no third-party warnings or progress bars), a bad image is reported once, INFO lines are kgzsl's.

The run here uses the MiniLM text encoder and the command adds a concept, so that it goes through the
code paths that print torch's ``torch.jit.script`` FutureWarning (imported by torch_geometric) and the
transformers "Loading weights" progress bar when nothing silences them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_WNIDS, wordnet_available

pytestmark = pytest.mark.slow

_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING|ERROR) (\S+): ")


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not wordnet_available():
        pytest.skip("WordNet 3.0 not installed (apt-get install wordnet-base)")
    from kgzsl.training.config import load_config
    from kgzsl.training.run import train_run

    root = tmp_path_factory.mktemp("minilm")
    (root / "tiny.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    config = load_config(None, [f"graph.path={root / 'graph'}", f"graph.wnids={root / 'tiny.txt'}", "name=minilm",
                                "features.encoder=minilm", "model.name=dgp", "model.hidden_channels=[64]",
                                "train.epochs=10", "train.device=cpu"])
    return train_run(config, out_dir=root / "run", progress=False, build_graph=True)


def _predict(run: Path, tmp_path: Path, *options: str, late: tuple[str, ...] = ()) -> tuple[int, str, str, Path]:
    import skimage

    cat = str(Path(os.path.dirname(skimage.__file__)) / "data" / "chelsea.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n0000")
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text("- name: Burmese cat\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run([sys.executable, "-m", "kgzsl", *options, "predict", *late, str(run), cat, str(bad), "--labels",
                          "tabby,tench,Burmese cat", "--concept-file", str(concepts), "--top-k", "2", "--device",
                          "cpu"], capture_output=True, text=True, timeout=300, env=env)
    return out.returncode, out.stdout, out.stderr, bad


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_predict_prints_only_the_result_and_the_failure_count(minilm_run, tmp_path, where):
    # `kgzsl -q predict ...` and `kgzsl predict -q ...` alike
    code, out, err, bad = _predict(minilm_run, tmp_path, "-q") if where == "before" else \
        _predict(minilm_run, tmp_path, late=("-q",))
    assert code == 1  # the broken image failed; the other one is still classified
    assert "burmese_cat.n.01" in out and out.count("cannot load image") == 1
    assert err.strip() == "1 of 2 images failed", err  # no warnings, no progress bars, no log lines


def test_a_bad_image_is_reported_once_and_info_lines_are_kgzsl_s(minilm_run, tmp_path):
    code, out, err, bad = _predict(minilm_run, tmp_path)
    assert code == 1
    # without -q too: no deprecation warning from torch_geometric's internals, no bar for loading MiniLM
    assert "torch.jit.script" not in err and "Loading weights" not in err, err
    assert (out + err).count("cannot load image") == 1 and (out + err).count(f"{bad}:") == 1
    for line in err.splitlines():
        match = _LOG_LINE.match(line)
        if match and match[1] == "INFO":
            assert match[2].startswith("kgzsl."), line  # third-party INFO lines are left out
