"""Open set: answer "none of these" when no candidate is likely enough.

The score is the **maximum logit** over the candidates (pooled feature · predicted row, scaled by
the run's ``row_scale``, plus bias), not the top softmax probability: a softmax score depends on how
many and which candidates are given, so a threshold calibrated on one label list would not carry to
another, while a candidate's logit does not grow or shrink with the number of others (MaxLogit,
Hendrycks et al. 2022, also detects unknowns better than the softmax score). One dependence on the
list is meant: where a list mixes the backbone's classes with predicted rows, the real rows' logits
are lowered by ``-log P(K | x)``, the backbone's own doubt that the photo shows any of the list's
classes it knows (:class:`~kgzsl.inference.claims.SeenShare`). Near 0 on photos of those classes, it
makes a photo of none of them more likely to fall below the threshold, which is what abstaining is for.
Where a run is calibrated on the user's images and a short list is fitted to them, the fitted rows
rank the candidates, but the logit compared with the threshold is the calibrated head's
(:func:`~kgzsl.inference.abstain_rule.abstain_scores`): each fit has a scale of its own.

Calibration uses real in-set images: a run holds no images, and synthetic "features" built from
classifier rows have no realistic scale, so they cannot set a threshold on real logits. The caller
gives images of seen classes the model was *not* fitted to (an ImageNet-style folder
``root/<wnid>/*.jpg``, whose class folders are the candidates, or a list of image files with
``labels=``), or precomputed features; their features come from
:func:`kgzsl.vision.extract.extract_features`. The threshold is the ``1 - keep`` quantile of their
max logits, so a share ``keep`` of them is kept. It is stored in ``<run>/abstain.json`` with the
method, the keep share and the number of inputs, and set on the classifier
(:meth:`~kgzsl.inference.classifier.ZeroShotClassifier.set_abstain`); the rule applied at
prediction is :mod:`kgzsl.inference.abstain_rule`.

Example:
    >>> calibrate_abstain(clf, keep=0.95, images="data/val_seen")
    >>> clf.predict("odd.jpg", ["cat", "dog"], abstain=True)["abstained"]
    True
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from kgzsl.errors import InputError
from kgzsl.inference.abstain_rule import ABSTAIN_FILE, abstain_scores
from kgzsl.utils.io import write_json

__all__ = ["calibrate_abstain", "check_keep"]


def check_keep(keep: float) -> None:
    """Refuse a keep share outside (0, 1] (NaN included).

    Raises:
        InputError: Naming ``keep`` (``--keep`` on the command line).
    """
    if not 0 < keep <= 1:
        raise InputError(f"keep must be in (0, 1], got {keep}", cli_message=f"--keep must be in (0, 1], got {keep}")


def _features(clf: Any, images: Any, labels: Sequence[str] | None, progress: bool) -> tuple[torch.Tensor, list | None]:
    from kgzsl.vision.extract import extract_features
    from kgzsl.vision.folders import class_folders, image_folder, list_images

    if isinstance(images, torch.Tensor):
        return images.float(), list(labels) if labels is not None else None
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        root = Path(images)
        try:
            items = image_folder(root)
            paths = [p for p, _ in items]
            labels = labels if labels is not None else sorted({w for _, w in items})
        except ValueError:  # a flat folder of images, or sub-folders named by labels
            paths = list_images(root)
            named = class_folders(root)
            labels = labels if labels is not None or not named else named
    else:
        paths = [Path(p) for p in ([images] if isinstance(images, (str, os.PathLike)) else images)]
    if not paths:
        raise InputError(f"no calibration images in {images}")
    feats, ok = extract_features(clf.backbone, paths, progress=progress)
    if not ok.any():
        raise InputError("none of the calibration images could be read")
    return feats[ok], list(labels) if labels is not None else None


def calibrate_abstain(clf: Any, keep: float = 0.95, images: Any = None, labels: Sequence[str] | None = None,
                      save: bool = True, progress: bool = False) -> dict[str, Any]:
    """Choose the max-logit threshold that keeps a share ``keep`` of in-set inputs; store it with the run.

    Args:
        clf: A loaded :class:`~kgzsl.inference.classifier.ZeroShotClassifier`.
        keep: Share of in-set inputs that must stay above the threshold (0 < keep <= 1).
        images: In-set calibration data: an ImageNet-style folder (its class folders are the
            candidates), a flat folder or list of image files, or a ``[B, D]`` feature tensor.
        labels: Candidate labels the calibration inputs are scored against (default: the folder's
            classes; required for a flat folder, a file list or features).
        save: Write ``<run>/abstain.json`` atomically.
        progress: Progress bar while extracting features.

    Returns:
        ``{"threshold", "score", "method", "keep", "inputs", "kept", "candidates", "score_calibration"}``
        (the last, a fingerprint of the run's score calibration, or None); also set on the
        classifier (``clf.abstain_calibration``) for ``predict(..., abstain=True)``.

    Raises:
        ValueError: For a keep share outside (0, 1], no calibration data, or no candidate labels.
    """
    check_keep(keep)
    if images is None:
        raise InputError("calibration needs in-set images (a folder of held-out seen classes) or their features; "
                         "a run holds no images")
    feats, cands = _features(clf, images, labels, progress)
    if not cands:
        raise InputError("give labels= (the candidate classes of the calibration images)",
                         cli_message="give --labels (the candidate classes of the calibration images), or make "
                         "--images a folder with one sub-folder per class named by a label or a wnid")
    with torch.inference_mode():
        scores = abstain_scores(clf.candidate_head(cands), feats.to(clf.rows.device)).float().cpu().sort().values
    n = scores.numel()
    drop = math.floor((1 - keep) * n + 1e-9)  # at most this many below the threshold
    lowest = float(scores[drop])  # the lowest score kept
    below = float(scores[drop - 1]) if drop > 0 else lowest - 2e-6 * max(1.0, abs(lowest))
    # halfway to the highest score dropped: the same images are kept when their logits are recomputed
    # with other batching or threading (last-bit differences), unlike a threshold equal to a score
    threshold = (below + lowest) / 2 if below < lowest else lowest
    kept = float((scores >= threshold).float().mean())
    result = {"threshold": threshold, "score": "max_logit", "keep": keep, "kept": round(kept, 6), "inputs": n,
              "method": "images" if not isinstance(images, torch.Tensor) else "features",
              "candidates": [str(c) for c in cands]}
    # the score calibration the logits above were computed under (None: none); checked when the run loads
    result["score_calibration"] = clf.score_calibration.fingerprint() if clf.score_calibration is not None else None
    if save and clf.run_dir is not None:
        write_json(Path(clf.run_dir) / ABSTAIN_FILE, result)
    clf.set_abstain(result)
    return result
