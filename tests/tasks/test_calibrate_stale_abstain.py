"""A new score calibration drops the abstain threshold set on the previous one's logits."""

from __future__ import annotations

import shutil

import pytest
import torch

from kgzsl.inference.abstain_rule import ABSTAIN_FILE
from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.scoring import CALIBRATION_FILE
from kgzsl.tasks.abstain import calibrate_abstain
from kgzsl.tasks.calibrate import calibrate_scores

pytestmark = pytest.mark.slow

LABELS = ["tabby", "tench", "airliner"]


@pytest.fixture
def clf(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "run")
    return ZeroShotClassifier.load(tmp_path / "run", device="cpu")


def _features(seed: int) -> torch.Tensor:
    return torch.rand(12, 1280, generator=torch.Generator().manual_seed(seed)) * 3


def test_recalibrating_scores_removes_the_stale_threshold(clf, caplog):
    calibrate_scores(clf, _features(0))
    calibrate_abstain(clf, keep=0.9, images=_features(1), labels=LABELS)
    assert (clf.run_dir / ABSTAIN_FILE).is_file() and clf.abstain_calibration is not None
    caplog.clear()
    calibrate_scores(clf, _features(2))
    assert (clf.run_dir / CALIBRATION_FILE).is_file() and not (clf.run_dir / ABSTAIN_FILE).exists()
    assert clf.abstain_calibration is None
    assert f"removed {clf.run_dir / ABSTAIN_FILE} (set on the logits of the previous score calibration)" in caplog.text
    assert ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone).abstain_calibration is None


def test_a_threshold_that_follows_replaces_it_without_a_warning(clf, caplog):
    calibrate_abstain(clf, keep=0.9, images=_features(1), labels=LABELS)
    caplog.clear()
    calibrate_scores(clf, _features(0), abstain_follows=True)
    assert not (clf.run_dir / ABSTAIN_FILE).exists() and "removed" not in caplog.text
    calibrate_abstain(clf, keep=0.9, images=_features(1), labels=LABELS)
    assert (clf.run_dir / ABSTAIN_FILE).is_file()


def test_not_saving_keeps_the_file_but_drops_the_classifier_s_threshold(clf, caplog):
    calibrate_abstain(clf, keep=0.9, images=_features(1), labels=LABELS)
    calibrate_scores(clf, _features(0), save=False)  # the stored calibration, which the file fits, is unchanged
    assert (clf.run_dir / ABSTAIN_FILE).is_file() and clf.abstain_calibration is None
    assert "dropped the classifier's abstain threshold" in caplog.text


def test_a_threshold_set_under_another_calibration_is_ignored_on_load(clf, tmp_path, caplog):
    # two `kgzsl calibrate` at once: the run ends with one's score calibration and the other's threshold
    other = ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone)
    calibrate_scores(clf, _features(0), abstain_follows=True)
    calibrate_abstain(clf, keep=0.9, images=_features(1), labels=LABELS)
    kept = (clf.run_dir / ABSTAIN_FILE).read_bytes()
    calibrate_scores(other, _features(2), abstain_follows=True)  # the other process's writes land in between
    (clf.run_dir / ABSTAIN_FILE).write_bytes(kept)
    caplog.clear()
    again = ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone)
    assert again.abstain_calibration is None
    assert "its threshold was set under another score calibration" in caplog.text
    # the threshold of the calibration in the run is taken, also after a save and load round trip
    calibrate_abstain(other, keep=0.9, images=_features(1), labels=LABELS)
    caplog.clear()
    assert ZeroShotClassifier.load(clf.run_dir, device="cpu", backbone=clf.backbone).abstain_calibration is not None
    assert "ignoring" not in caplog.text


def test_a_calibration_on_few_images_is_warned_about(clf, caplog):
    calibrate_scores(clf, torch.rand(60, 1280, generator=torch.Generator().manual_seed(3)) * 3, save=False)
    assert "few images" not in caplog.text
    calibrate_scores(clf, _features(4), save=False)  # 12 images
    assert "score calibration on 12 images only: the centring is estimated from few images" in caplog.text
    assert "--abstain-only" in caplog.text


def test_a_calibration_the_run_cannot_store_leaves_the_classifier_as_it_was(clf, monkeypatch):
    """A read-only run: the OutputError came after the classifier was calibrated and its threshold dropped."""
    from kgzsl.errors import OutputError
    from kgzsl.inference.scoring import ScoreCalibration

    calibrate_abstain(clf, keep=0.9, images=_features(1), labels=LABELS)
    threshold = clf.abstain_calibration
    x = _features(3)
    before = clf.logits(x, LABELS)

    def read_only(self, path):
        raise OutputError(f"cannot write {path}: Permission denied")

    monkeypatch.setattr(ScoreCalibration, "save", read_only)
    with pytest.raises(OutputError, match="Permission denied"):
        calibrate_scores(clf, _features(0))
    assert clf.score_calibration is None and clf.abstain_calibration == threshold
    torch.testing.assert_close(clf.logits(x, LABELS), before)
    assert (clf.run_dir / ABSTAIN_FILE).is_file() and not (clf.run_dir / CALIBRATION_FILE).exists()
