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

import os
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError
from kgzsl.inference.scoring import CALIBRATION_FILE, ScoreCalibration

__all__ = ["calibrate_scores"]


def calibrate_scores(clf: Any, images: str | os.PathLike | torch.Tensor, progress: bool = True,
                     save: bool = True) -> ScoreCalibration:
    """Fit the classifier's score calibration on unlabelled images (and store it in its run).

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier`.
        images: A folder of images (searched recursively, no labels needed) or their pooled
            features ``[M, D]``.
        progress: Show a progress bar while features are extracted.
        save: Write ``score_calibration.safetensors`` into the classifier's run folder.

    Raises:
        InputError: If fewer than 2 images could be read.
    """
    if isinstance(images, torch.Tensor):
        feats, source = images, f"{images.size(0)} feature vectors"
    else:
        from kgzsl.vision.extract import extract_features
        from kgzsl.vision.folders import list_images

        paths = list_images(images)
        feats, ok = extract_features(clf.backbone, paths, progress=progress)
        feats, source = feats[ok], f"{int(ok.sum())} images in {Path(images).name or images}"
    if feats.size(0) < 2:
        raise InputError(f"score calibration needs at least 2 readable images, got {feats.size(0)} in {images}")
    calib = clf.calibrate_scores(feats, source)
    if save and clf.run_dir is not None:
        calib.save(Path(clf.run_dir) / CALIBRATION_FILE)
    return calib
