"""``kgzsl calibrate RUN --images DIR``: fit the score calibration on the user's own unlabelled images.

Without it, every candidate is scored on the backbone's own scale (:mod:`kgzsl.inference.scoring`).
Images from the user's own domain (no labels needed) give the mean and spread that matter to them:
every class is then centred on them, the hubness correction, and each predicted row is
standardised per class. The result is stored in the run as ``score_calibration.safetensors``, with
a sample of the images' features, and used by every later ``predict``, ``evaluate`` and ``search``
of that run: a short label list is also fitted to those features (:mod:`kgzsl.inference.adaptation`).

Example:
    >>> calibrate_scores(clf, "my_photos/")
    ScoreCalibration(..., source='412 images in my_photos', images=412)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError, OutputError
from kgzsl.inference.abstain_rule import ABSTAIN_FILE
from kgzsl.inference.scoring import CALIBRATION_FILE, ScoreCalibration, fit_calibration

__all__ = ["calibrate_scores", "top1_among"]

logger = logging.getLogger(__name__)


FEW_IMAGES = 50  # the fewest images measured to gain (docs/scoring.md); fewer are warned about


def calibrate_scores(clf: Any, images: str | os.PathLike | torch.Tensor, progress: bool = True,
                     save: bool = True, abstain_follows: bool = False) -> ScoreCalibration:
    """Fit the classifier's score calibration on unlabelled images (and store it in its run).

    The logits change with the calibration, so an abstain threshold set on the previous ones
    (``abstain.json``, :func:`kgzsl.tasks.abstain.calibrate_abstain`) no longer holds: it is
    dropped from the classifier and, when the new calibration is stored, removed from the run,
    with a warning unless ``abstain_follows``.

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier`.
        images: A folder of images (searched recursively, no labels needed) or their pooled
            features ``[M, D]``.
        progress: Show a progress bar while features are extracted.
        save: Write ``score_calibration.safetensors`` into the classifier's run folder.
        abstain_follows: The caller sets a new abstain threshold next (as ``kgzsl calibrate`` does
            given in-set classes): the stale one is removed without a warning.

    Raises:
        InputError: If fewer than 2 images could be read.
        kgzsl.errors.OutputError: If the run folder cannot be written to; the classifier is then left
            as it was (its calibration and abstain threshold).
    """
    if isinstance(images, torch.Tensor):
        feats, source = images, f"{images.size(0)} feature vectors"
    else:
        from kgzsl.vision.extract import extract_features
        from kgzsl.vision.folders import list_images

        paths = list_images(images)
        feats, ok = extract_features(clf.backbone, paths, progress=progress)
        feats, source = feats[ok], f"{int(ok.sum())} images in {Path(images).name or images}"
        if not bool(ok.all()):  # each one was named in a warning
            source += f" ({int((~ok).sum())} unreadable, skipped)"
    if feats.size(0) < 2:
        raise InputError(f"score calibration needs at least 2 readable images, got {feats.size(0)} in {images}")
    if feats.size(0) < FEW_IMAGES:
        logger.warning("score calibration on %d images only: the centring is estimated from few images and can cost "
                       "accuracy (26 photos of 16 kinds of fish, scored among themselves: top-1 0.385 before, 0.154 "
                       "after; 50 or more images gained on Fashion-MNIST); with more images of your domain it is "
                       "better estimated, and `kgzsl calibrate --abstain-only` sets the 'none of these' threshold "
                       "alone", feats.size(0))
    calib = fit_calibration(feats, clf.backbone.classifier_rows(), source)
    if save and clf.run_dir is not None:  # stored first: a run folder that cannot be written changes nothing
        calib.save(Path(clf.run_dir) / CALIBRATION_FILE)
    clf.set_score_calibration(calib)
    stale = "dropped the classifier's abstain threshold" if clf.abstain_calibration is not None else None
    clf.set_abstain(None)
    if save and clf.run_dir is not None:
        if _remove(Path(clf.run_dir) / ABSTAIN_FILE):
            stale = f"removed {Path(clf.run_dir) / ABSTAIN_FILE}"
    if stale and not abstain_follows:
        logger.warning("%s (set on the logits of the previous score calibration); for a new one, run `kgzsl "
                       "calibrate RUN --images DIR` on a folder with one sub-folder per in-set class named by a "
                       "label or a wnid (or give --labels), or call kgzsl.tasks.abstain.calibrate_abstain", stale)
    return calib


def _remove(path: Path) -> bool:
    """Delete ``path`` (one atomic step); False if it did not exist."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot remove {path}: {exc.strerror or exc}; delete it by hand, its threshold was "
                          "set on the previous score calibration") from exc
    return True


def top1_among(clf: Any, features: torch.Tensor, truth: list[str], classes: list[str]) -> float:
    """Top-1 of ``features`` among ``classes`` (labels), as ``predict`` scores them: the share whose
    best class is ``truth``'s."""
    with torch.inference_mode():
        best = clf.logits(features.to(clf.rows.device), classes).argmax(1).cpu()
    index = {c: i for i, c in enumerate(classes)}
    return float((best == torch.tensor([index[t] for t in truth])).float().mean())
