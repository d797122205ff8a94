"""Abstain: a max-logit threshold that keeps the calibrated share of in-set inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from kgzsl.inference.abstain_rule import ABSTAIN_FILE, read_calibration
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.tasks.abstain import calibrate_abstain

pytestmark = pytest.mark.slow

LABELS = ["tabby", "Persian cat", "tench", "airliner", "golden retriever"]


@pytest.fixture
def clf(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # calibration writes into the run folder
    return ZeroShotClassifier.load(run, device="cpu")


@pytest.mark.parametrize("keep", [0.5, 0.8, 0.95, 1.0])
def test_calibrated_share_is_kept(clf, keep):
    # in-set evidence: features near the real rows of seen classes, at a realistic spread
    g = torch.Generator().manual_seed(0)
    rows = clf.backbone.classifier_rows()[:, :-1]
    feats = rows[torch.randint(0, 1000, (200,), generator=g)] * 40 + torch.rand(200, rows.size(1), generator=g)
    result = calibrate_abstain(clf, keep=keep, images=feats, labels=LABELS)
    kept = int((clf.logits(feats, LABELS).max(1).values >= result["threshold"]).sum())
    assert round(keep * 200) <= kept <= round(keep * 200) + 1  # the share, not more (no ties here)
    stored = json.loads((clf.run_dir / ABSTAIN_FILE).read_text())
    assert stored["score"] == "max_logit" and stored["keep"] == keep and stored["inputs"] == 200
    assert stored["threshold"] == pytest.approx(result["threshold"])
    assert clf.abstain_calibration == result


def test_abstain_on_images(clf):
    import skimage

    data = Path(os.path.dirname(skimage.__file__)) / "data"
    photos = [data / n for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    result = calibrate_abstain(clf, keep=0.75, images=photos, labels=LABELS)
    assert result["method"] == "images" and result["kept"] >= 0.75
    reloaded = ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone)
    assert reloaded.abstain_calibration["threshold"] == pytest.approx(result["threshold"])  # from abstain.json
    records = reloaded.predict(photos, LABELS, top_k=2, abstain=True)
    assert sum(r["abstained"] for r in records) == 1  # 3 of 4 calibration photos are kept
    for r in records:
        assert r["abstained"] == (r["max_logit"] < r["threshold"])
        assert len(r["predictions"]) == 2 and all(p["score"] is not None for p in r["predictions"])
    assert records[0]["image"] == str(photos[0]) and records[0]["predictions"][0]["label"] == "tabby"
    alone = reloaded.predict(photos[0], LABELS, top_k=2)  # batch of 1: scores may differ in the last digit
    assert [p["label"] for p in records[0]["predictions"]] == [p["label"] for p in alone]


def test_abstain_needs_calibration(clf):
    with pytest.raises(ValueError, match="calibrate.*abstain.json is missing"):
        clf.predict(torch.zeros(1, 3, 224, 224), LABELS, abstain=True)
    (clf.run_dir / ABSTAIN_FILE).write_text('{"keep": 0.9}')  # no threshold: ignored when loading
    reloaded = ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone)
    assert reloaded.abstain_calibration is None and read_calibration(clf.run_dir) is None
    with pytest.raises(ValueError, match="holds no usable threshold"):
        reloaded.predict(torch.zeros(1, 3, 224, 224), LABELS, abstain=True)
    with pytest.raises(ValueError, match="keep"):
        calibrate_abstain(clf, keep=0.0, images=torch.zeros(2, 1280), labels=LABELS)


def test_a_folder_of_class_folders_named_by_labels_gives_the_candidates(clf, tmp_path):
    import skimage

    data = Path(os.path.dirname(skimage.__file__)) / "data"
    for label, name in [("tabby", "chelsea.png"), ("coffee mug", "coffee.png")]:
        (tmp_path / "photos" / label).mkdir(parents=True)
        shutil.copy(data / name, tmp_path / "photos" / label / name)
    result = calibrate_abstain(clf, keep=1.0, images=tmp_path / "photos")
    assert result["candidates"] == ["coffee mug", "tabby"] and result["inputs"] == 2


def test_abstaining_with_another_label_list_than_the_thresholds_is_said_once(clf, caplog):
    g = torch.Generator().manual_seed(0)
    rows = clf.backbone.classifier_rows()[:, :-1]
    feats = rows[torch.randint(0, 1000, (50,), generator=g)] * 40 + torch.rand(50, rows.size(1), generator=g)
    calibrate_abstain(clf, keep=0.9, images=feats, labels=LABELS)
    batch = torch.zeros(1, 3, 224, 224)
    with caplog.at_level("WARNING", logger="kgzsl.inference.classifier"):
        clf.predict(batch, list(reversed(LABELS)), abstain=True)  # the same list, in another order: nothing said
        assert "threshold was set on another label list" not in caplog.text
        clf.predict(batch, ["tabby", "tench"], abstain=True)
        clf.predict(batch, ["tabby", "airliner"], abstain=True)
    said = [r for r in caplog.records if "threshold was set on another label list (5 candidates)" in r.getMessage()]
    assert len(said) == 1 and "than the 90% it was set to keep" in said[0].getMessage()
