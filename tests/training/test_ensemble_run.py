"""A run of an ensemble (``model.name: dgp+sgcn``): members trained one after the other, the rows their
normalised mean, and everything a run is used for (loading, concepts) working through both members."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_WNIDS

pytestmark = pytest.mark.slow


def _config(tiny_run: Path, tmp_path: Path, *overrides: str) -> Any:
    """dgp+sgcn on the tiny real graph the ``tiny_run`` fixture built."""
    from kgzsl.training.config import load_config

    graph = json.loads((tiny_run / "run.json").read_text())["graph"]
    wnid_file = tmp_path / "tiny.txt"
    wnid_file.write_text("\n".join(TINY_WNIDS) + "\n")
    return load_config(None, [f"graph.path={graph}", f"graph.wnids={wnid_file}", "name=tiny-ens",
                              "features.encoder=wordllama", "model.name=dgp+sgcn", "model.hidden_channels=[64]",
                              "train.epochs=40", "train.val_fraction=0.1", "train.patience=40", "train.device=cpu",
                              *overrides])


@pytest.mark.parametrize("name", ["dgp+sgcn", "dgp+sgcn+conse"])
def test_an_ensemble_run_holds_its_members_and_their_mean_rows(tiny_run, tmp_path, name):
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.inference.concept_state import load_propagation_model
    from kgzsl.models.conse import neighbour_rows
    from kgzsl.training.run import train_run
    from kgzsl.utils.io import load_tensors

    out = train_run(_config(tiny_run, tmp_path, f"model.name={name}"), out_dir=tmp_path / "run", progress=False)
    summary = json.loads((out / "run.json").read_text())
    assert summary["model"] == name and [m["model"] for m in summary["members"]] == name.split("+")
    trained = [m for m in summary["members"] if m["model"] != "conse"]
    assert all(1 <= m["best_epoch"] <= 40 for m in trained)
    assert all(m["epochs_run"] == 0 and m["best_val_cosine"] is not None for m in summary["members"]
               if m["model"] == "conse")  # nothing trained: it remembers the training rows
    assert (out / "loss.png").is_file()
    assert not list(out.glob("checkpoint*"))  # complete: nothing left to resume
    history = json.loads((out / "history.json").read_text())
    assert [len(m["train_loss"]) for m in history["members"]] == [m["epochs_run"] for m in summary["members"]]

    stored = load_tensors(out / "rows.safetensors")
    model = load_propagation_model(out)
    x = load_tensors(out / "node_features.safetensors")["features"]
    from kgzsl.graph import KnowledgeGraph

    layers = model.operators(KnowledgeGraph.load(out))
    members = [m.predict_rows(x, ops) for m, ops in zip(model.members, layers)]
    torch.testing.assert_close(stored["rows"], F.normalize(sum(members), dim=1), atol=1e-5, rtol=1e-4)
    clf = ZeroShotClassifier.load(out, device="cpu")
    real = F.normalize(clf.backbone.classifier_rows(), dim=1)
    val, train = stored["val_rows"], stored["train_rows"]
    seen = {w: i for i, w in enumerate(clf.backbone.wnids)}
    targets = real[[seen[clf.wnids[int(n)]] for n in val]]
    # the validation cosine is that of rows made without the validation rows: ConSE, which remembers
    # every seen row in the end (keep_every_row), scored them from the training rows alone
    at_val = [m.predict_rows(x, ops, val).detach() if m.trainable else
              F.normalize(neighbour_rows(x[val], x[train], real[[seen[clf.wnids[int(n)]] for n in train]],
                                         m.neighbours, m.temperature), dim=1)
              for m, ops in zip(model.members, layers)]
    assert summary["best_val_cosine"] == pytest.approx(
        float(F.cosine_similarity(F.normalize(sum(at_val), dim=1), targets, dim=1).mean()), abs=1e-5)
    for m, fitted in zip(model.members, summary["members"]):
        if not m.trainable:
            assert m.keys.size(0) == fitted["remembers"] == train.numel() + val.numel()
        else:
            assert "remembers" not in fitted
    if name == "dgp+sgcn":  # nothing remembered: the stored rows are the validated ones
        assert summary["best_val_cosine"] == pytest.approx(
            float(F.cosine_similarity(stored["rows"][val], targets, dim=1).mean()), abs=1e-5)

    clf.add_concept("fluffcat", parents=["tabby"], description="a very fluffy house cat")  # through every member
    assert clf.added_wnids and torch.isfinite(clf.rows[-1]).all()
    assert float(clf.rows[-1].norm()) == pytest.approx(1.0, abs=1e-4)


def _interrupt_at(step: int, config: Any, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train ``config`` into ``out`` and stop it with a Ctrl-C at the ``step``-th training step (all members counted)."""
    import kgzsl.training.fit
    from kgzsl.training.run import train_run

    real, calls = kgzsl.training.fit.regression_loss, {"n": 0}

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kgzsl.training.fit, "regression_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, out_dir=out, progress=False)
    monkeypatch.undo()


def test_an_ensemble_interrupted_in_its_second_member_resumes_to_the_same_rows(tiny_run, tmp_path, monkeypatch):
    from kgzsl.training.run import train_run
    from kgzsl.utils.io import load_tensors

    config = _config(tiny_run, tmp_path, "train.epochs=20", "train.patience=20", "train.checkpoint_every=5")
    expected = load_tensors(train_run(config, out_dir=tmp_path / "whole", progress=False) / "rows.safetensors")
    _interrupt_at(20 + 13, config, tmp_path / "cut", monkeypatch)  # Ctrl-C at the 13th step of the second member
    left = sorted(p.name for p in (tmp_path / "cut").glob("checkpoint*"))
    assert left == ["checkpoint-0-dgp.safetensors", "checkpoint-1-sgcn.safetensors"], left
    out = train_run(config, out_dir=tmp_path / "cut", progress=False, resume=True)
    summary = json.loads((out / "run.json").read_text())
    assert [m["resumed_from_epoch"] for m in summary["members"]] == [15, 10]  # their last checkpoints
    assert torch.equal(load_tensors(out / "rows.safetensors")["rows"], expected["rows"])
    assert not list(out.glob("checkpoint*"))


def test_a_member_the_interrupted_run_never_reached_starts_without_a_missing_checkpoint_warning(
        tiny_run, tmp_path, monkeypatch, caplog):
    import logging

    from kgzsl.training.run import train_run

    config = _config(tiny_run, tmp_path, "train.epochs=20", "train.patience=20", "train.checkpoint_every=5")
    _interrupt_at(13, config, tmp_path / "cut", monkeypatch)  # Ctrl-C at the 13th step of the first member
    assert sorted(p.name for p in (tmp_path / "cut").glob("checkpoint*")) == ["checkpoint-0-dgp.safetensors"]
    with caplog.at_level(logging.INFO, logger="kgzsl"):
        train_run(config, out_dir=tmp_path / "cut", progress=False, resume=True)
    assert "no checkpoint at" not in caplog.text and "sgcn had not started when the run stopped" in caplog.text
