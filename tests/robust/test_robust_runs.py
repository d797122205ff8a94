"""Whole training runs: determinism (same config + seed → same rows) and ``kgzsl train --resume``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import kgzsl.training.fit
from kgzsl.cli import main
from kgzsl.training.config import load_config
from kgzsl.utils.io import load_tensors
from kgzsl.training.run import CHECKPOINT_FILE, train_run

from robust_helpers import torch_threads

pytestmark = pytest.mark.slow


def _overrides(tiny_run: Path, seed: int = 0) -> list[str]:
    """A 12-epoch DGP (dropout 0.5) on the tiny graph of ``tiny_run`` (built and featurised already)."""
    root = tiny_run.parent
    return [f"graph.path={root / 'graph'}", f"graph.wnids={root / 'tiny.txt'}", "name=robust",
            "features.encoder=wordllama", "model.name=dgp", "model.hidden_channels=[64]", "train.epochs=12",
            "train.checkpoint_every=4", "train.val_fraction=0.1", "train.patience=100", "train.device=cpu",
            f"train.seed={seed}"]


@pytest.fixture(scope="module")
def reference_run(tiny_run, tmp_path_factory) -> Path:
    with torch_threads(1):
        return train_run(load_config(None, _overrides(tiny_run)), tmp_path_factory.mktemp("ref") / "run",
                         progress=False)


def _rows(run: Path) -> torch.Tensor:
    return load_tensors(run / "rows.safetensors")["rows"]


def test_same_config_and_seed_give_bit_identical_rows(tiny_run, reference_run, tmp_path):
    with torch_threads(1):
        again = train_run(load_config(None, _overrides(tiny_run)), tmp_path / "again", progress=False)
        other_seed = train_run(load_config(None, _overrides(tiny_run, seed=1)), tmp_path / "seed1", progress=False)
    assert torch.equal(_rows(again), _rows(reference_run))
    assert load_tensors(again / "model.safetensors").keys() == load_tensors(reference_run / "model.safetensors").keys()
    assert all(torch.equal(a, b) for a, b in zip(load_tensors(again / "model.safetensors").values(),
                                                 load_tensors(reference_run / "model.safetensors").values()))
    assert json.loads((again / "history.json").read_text()) == json.loads((reference_run / "history.json").read_text())
    assert not torch.equal(_rows(other_seed), _rows(reference_run))  # the seed matters (dropout, init)


def test_run_records_seed_versions_and_backbone_weights(reference_run):
    summary = json.loads((reference_run / "run.json").read_text())
    assert summary["seed"] == 0 and summary["config"]["train"]["seed"] == 0
    assert summary["config"]["train"]["holdout_seed"] == 0 and summary["config"]["train"]["checkpoint_every"] == 4
    for package in ("kgzsl", "python", "torch", "torchvision", "torch_geometric", "numpy", "safetensors", "nltk"):
        assert summary["versions"].get(package), package
    assert summary["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert "efficientnet_lite0" in summary["backbone_weights"]
    assert summary["device"] == "cpu" and summary["resumed_from_epoch"] is None
    assert not (reference_run / CHECKPOINT_FILE).exists()  # removed once the run is complete


def _ctrl_c_in_epoch_10(monkeypatch):
    """Make training raise KeyboardInterrupt (Ctrl-C) in its 10th epoch (undone by ``monkeypatch.undo()``)."""
    real = kgzsl.training.fit.regression_loss
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kgzsl.training.fit, "regression_loss", interrupted)


def test_kgzsl_train_resume_continues_to_the_same_rows(tiny_run, reference_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "interrupted"
    argv = ["-q", "train", *_overrides(tiny_run), "--out", str(out), "--no-progress"]
    with torch_threads(1):
        _ctrl_c_in_epoch_10(monkeypatch)  # the last checkpoint is from epoch 8
        assert main(argv) == 130
        assert "--resume" in capsys.readouterr().err
        assert (out / CHECKPOINT_FILE).is_file() and not (out / "run.json").exists()
        monkeypatch.undo()
        assert main([*argv, "--resume"]) == 0
    assert torch.equal(_rows(out), _rows(reference_run))
    summary = json.loads((out / "run.json").read_text())
    assert summary["resumed_from_epoch"] == 8 and summary["epochs_run"] == 12
    assert not (out / CHECKPOINT_FILE).exists()
    history = json.loads((out / "history.json").read_text())
    assert history == json.loads((reference_run / "history.json").read_text())


def test_kgzsl_train_without_resume_on_an_interrupted_run_says_it_starts_over(tiny_run, tmp_path, monkeypatch,
                                                                              caplog):
    out = tmp_path / "interrupted"
    argv = ["-q", "train", *_overrides(tiny_run), "--out", str(out), "--no-progress"]
    with torch_threads(1):
        _ctrl_c_in_epoch_10(monkeypatch)
        assert main(argv) == 130
        monkeypatch.undo()
        caplog.clear()
        assert main(argv) == 0
    warned = [r for r in caplog.records if "add --resume to continue it instead" in r.getMessage()]
    assert warned and warned[0].levelname == "WARNING"  # shown under -q: the user may have meant --resume
