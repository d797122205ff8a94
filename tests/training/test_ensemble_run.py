"""A run of an ensemble (``model.name: dgp+sgcn``): members trained one after the other, the rows their
normalised mean, and everything a run is used for (loading, concepts) working through both members."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_WNIDS

pytestmark = pytest.mark.slow


def test_an_ensemble_run_holds_both_members_and_their_mean_rows(tiny_run, tmp_path):
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.inference.concepts import load_propagation_model
    from kgzsl.training.config import load_config
    from kgzsl.training.run import train_run
    from kgzsl.utils.io import load_tensors

    graph = json.loads((tiny_run / "run.json").read_text())["graph"]  # the tiny real graph, already built
    wnid_file = tmp_path / "tiny.txt"
    wnid_file.write_text("\n".join(TINY_WNIDS) + "\n")
    config = load_config(None, [f"graph.path={graph}", f"graph.wnids={wnid_file}", "name=tiny-ens",
                                "features.encoder=wordllama", "model.name=dgp+sgcn", "model.hidden_channels=[64]",
                                "train.epochs=40", "train.val_fraction=0.1", "train.patience=40",
                                "train.device=cpu"])
    out = train_run(config, out_dir=tmp_path / "run", progress=False)
    summary = json.loads((out / "run.json").read_text())
    assert summary["model"] == "dgp+sgcn" and [m["model"] for m in summary["members"]] == ["dgp", "sgcn"]
    assert all(1 <= m["best_epoch"] <= 40 for m in summary["members"])
    assert not list(out.glob("checkpoint*"))  # complete: nothing left to resume
    history = json.loads((out / "history.json").read_text())
    assert [len(m["train_loss"]) for m in history["members"]] == [m["epochs_run"] for m in summary["members"]]

    stored = load_tensors(out / "rows.safetensors")
    model = load_propagation_model(out)
    x = load_tensors(out / "node_features.safetensors")["features"]
    from kgzsl.graph import KnowledgeGraph

    layers = model.operators(KnowledgeGraph.load(out))
    members = [m.predict_rows(x, ops) for m, ops in zip(model.members, layers)]
    torch.testing.assert_close(stored["rows"], F.normalize(members[0] + members[1], dim=1), atol=1e-5, rtol=1e-4)
    clf = ZeroShotClassifier.load(out, device="cpu")
    real = F.normalize(clf.backbone.classifier_rows(), dim=1)
    val = stored["val_rows"]
    seen = {w: i for i, w in enumerate(clf.backbone.wnids)}
    targets = real[[seen[clf.wnids[int(n)]] for n in val]]
    assert summary["best_val_cosine"] == pytest.approx(
        float(F.cosine_similarity(stored["rows"][val], targets, dim=1).mean()), abs=1e-5)

    clf.add_concept("fluffcat", parents=["tabby"], description="a very fluffy house cat")  # through both members
    assert clf.added_wnids and torch.isfinite(clf.rows[-1]).all()
    assert float(clf.rows[-1].norm()) == pytest.approx(1.0, abs=1e-4)
