"""Abstain: a max-logit threshold that keeps the calibrated share of in-set inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.tasks.abstain import ABSTAIN_FILE, NONE_LABEL, calibrate_abstain

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


def test_abstain_on_images(clf):
    import skimage

    data = Path(os.path.dirname(skimage.__file__)) / "data"
    photos = [data / n for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    result = calibrate_abstain(clf, keep=0.75, images=photos, labels=LABELS)
    assert result["method"] == "images" and result["kept"] >= 0.75
    reloaded = ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone)
    preds = reloaded.predict(photos, LABELS, top_k=2, abstain=True)
    flagged = [p[0]["label"] == NONE_LABEL for p in preds]
    assert sum(flagged) == 1  # 3 of 4 calibration photos are kept
    assert all(len(p) == 2 + f for p, f in zip(preds, flagged))
    assert preds[0][0]["label"] == "tabby"


def test_abstain_needs_calibration(clf):
    with pytest.raises(ValueError, match="calibrate"):
        clf.predict(torch.zeros(1, 3, 224, 224), LABELS, abstain=True)
    with pytest.raises(ValueError, match="keep"):
        calibrate_abstain(clf, keep=0.0, images=torch.zeros(2, 1280), labels=LABELS)
