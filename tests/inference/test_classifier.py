import json
import os
from pathlib import Path

import pytest
import torch

from kgzsl.inference.classifier import RunNotFoundError, ZeroShotClassifier
from kgzsl.vision.images import ImageLoadError
from kgzsl.utils.io import load_tensors
from kgzsl.inference.labels import LabelError

pytestmark = pytest.mark.slow


def _chelsea() -> Path:
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data" / "chelsea.png"


@pytest.fixture(scope="module")
def clf(tiny_run):
    return ZeroShotClassifier.load(tiny_run, device="cpu")


def test_run_folder_contents(tiny_run):
    for name in ["config.yaml", "model.safetensors", "rows.safetensors", "nodes.tsv", "history.json", "loss.png",
                 "run.json"]:
        assert (tiny_run / name).is_file(), name
    summary = json.loads((tiny_run / "run.json").read_text())
    rows = load_tensors(tiny_run / "rows.safetensors")
    assert rows["rows"].shape == (summary["num_nodes"], 1281)
    assert torch.allclose(rows["rows"].norm(dim=1), torch.ones(summary["num_nodes"]), atol=1e-4)
    assert summary["train"] + summary["val"] == summary["seen"] == 24
    from importlib import metadata

    assert summary["versions"]["torch"] == metadata.version("torch") and summary["seed"] == 0
    assert (tiny_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seen_rows_are_recovered_and_classify_the_cat(clf, tiny_run):
    # after training, the predicted rows of the training classes approximate Lite0's real rows
    rows = load_tensors(tiny_run / "rows.safetensors")
    real = torch.nn.functional.normalize(clf.backbone.classifier_rows(), dim=1)
    train_nodes = rows["train_rows"]
    real_of = {w: i for i, w in enumerate(clf.backbone.wnids)}
    target = real[[real_of[clf.wnids[i]] for i in train_nodes.tolist()]]
    assert (rows["rows"][train_nodes] * target).sum(1).mean() > 0.8
    preds = clf.predict(_chelsea(), candidate_labels=["tabby", "tench", "airliner", "golden retriever"], top_k=4)
    assert preds[0]["label"] == "tabby" and preds[0]["synset"] == "tabby.n.01"
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-4)
    assert set(preds[0]) == {"label", "wnid", "synset", "score"}


def test_input_kinds_agree(clf):
    from PIL import Image

    labels = ["cat", "dog", "car"]
    by_path = clf.predict(_chelsea(), labels)
    pil = Image.open(_chelsea())
    by_pil = clf.predict(pil, labels)
    batch = torch.stack([clf.backbone.transform(pil.convert("RGB"))] * 2)
    by_tensor = clf.predict(batch, labels)
    assert by_path[0]["label"] == by_pil[0]["label"] == by_tensor[0][0]["label"] == by_tensor[1][0]["label"]
    assert by_path[0]["score"] == pytest.approx(by_tensor[0][0]["score"], abs=1e-4)
    everything = clf.predict(_chelsea(), None, top_k=3)
    assert len(everything) == 3


def test_bad_image_does_not_stop_the_batch(clf, tmp_path):
    bad = tmp_path / "not-an-image.jpg"
    bad.write_text("hello")
    records = clf.predict_detailed([_chelsea(), bad, tmp_path / "missing.png"], ["cat", "car"], top_k=1)
    assert "predictions" in records[0] and "error" in records[1] and "error" in records[2]
    assert str(bad) in records[1]["error"]
    assert clf.predict([bad, _chelsea()], ["cat", "car"])[0] == []
    with pytest.raises(ImageLoadError):
        clf.predict(bad, ["cat", "car"])


def test_label_errors(clf):
    with pytest.raises(LabelError, match="qwertyuiop"):
        clf.predict(_chelsea(), ["cat", "qwertyuiop"])
    with pytest.raises(LabelError, match="empty"):
        clf.predict(_chelsea(), [])


def test_missing_run(tmp_path):
    with pytest.raises(RunNotFoundError, match="kgzsl train"):
        ZeroShotClassifier.load(tmp_path)


def test_a_head_built_while_nodes_are_added_sees_all_of_the_change_or_none(tiny_run, monkeypatch):
    """``extend`` changes rows, ids, score rows and resolver one after the other; a thread building a
    head meanwhile (a server's ``predict`` with no labels) must not see half of it."""
    import threading

    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    feats = torch.zeros(1, clf.backbone.feature_dim)
    before = clf.logits(feats, None).shape[1]
    clf.logits(feats, ["tabby", "tench"])  # score rows built: extend now replaces them part by part
    inside, real = threading.Event(), clf._scoring.replace_from

    def slow_replace(start, rows):  # widen the moment between the new ids and the new score rows
        inside.set()
        threading.Event().wait(0.3)
        real(start, rows)

    monkeypatch.setattr(clf._scoring, "replace_from", slow_replace)
    adding = threading.Thread(target=clf.extend, args=(torch.ones(1, clf.rows.size(1)), ["c:new"], ["new.n.01"],
                                                        [["new thing"]]))
    adding.start()
    assert inside.wait(10)
    logits = clf.logits(feats, None)  # waits for the change instead of indexing rows that are not there yet
    adding.join()
    assert logits.shape == (1, before + 1)
    assert clf.resolve_labels(["new thing"])[0].wnid == "c:new"
