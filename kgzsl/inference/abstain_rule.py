"""The abstain rule applied at prediction: a calibrated max-logit threshold, kept in ``<run>/abstain.json``.

:func:`kgzsl.tasks.abstain.calibrate_abstain` chooses the threshold on in-set images and writes the
file; :meth:`ZeroShotClassifier.load <kgzsl.inference.classifier.ZeroShotClassifier.load>` reads it
back, and ``predict(..., abstain=True)`` marks every image whose best candidate logit is below the
threshold with ``"abstained": True`` (its predictions are still listed, best first). Why the score
is the maximum logit rather than a softmax probability is explained in :mod:`kgzsl.tasks.abstain`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from kgzsl.errors import InputError

__all__ = ["ABSTAIN_FILE", "check_calibration", "read_calibration", "missing_calibration", "abstain_fields",
           "abstain_scores", "follows_score_calibration"]

logger = logging.getLogger(__name__)

#: the abstain calibration of a run folder (``kgzsl calibrate``)
ABSTAIN_FILE = "abstain.json"


def check_calibration(calibration: Mapping[str, Any], where: str = "the abstain calibration") -> dict[str, Any]:
    """A copy of ``calibration`` after checking that it holds a finite number ``threshold``.

    Raises:
        ValueError: If it is not a mapping or has no usable threshold.
    """
    if not isinstance(calibration, Mapping):
        raise InputError(f"{where} must be a mapping with a 'threshold', got {type(calibration).__name__}")
    threshold = calibration.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InputError(f"{where} holds no finite number 'threshold' (got {threshold!r}); calibrate again")
    return dict(calibration)


def read_calibration(run_dir: str | Path) -> dict[str, Any] | None:
    """The calibration stored in ``<run_dir>/abstain.json``; None if the run was never calibrated.

    An unreadable file is logged and treated as absent: it only matters for ``abstain=True``, which
    then fails with :func:`missing_calibration`'s message.
    """
    path = Path(run_dir) / ABSTAIN_FILE
    if not path.is_file():
        return None
    try:
        return check_calibration(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        logger.warning("ignoring %s (%s); calibrate the run again to use abstain", path, exc)
        return None


def follows_score_calibration(calibration: Mapping[str, Any] | None, score_calibration: Any,
                              run_dir: str | Path) -> Mapping[str, Any] | None:
    """``calibration``, or None (with a warning) when it records a score calibration other than the
    run's ``score_calibration`` (its threshold is on logits that the run no longer computes: two
    ``kgzsl calibrate`` at once, or one interrupted between its two writes). Files that record none
    (written before the record was kept) are taken as they are."""
    if calibration is None or "score_calibration" not in calibration:
        return calibration
    current = score_calibration.fingerprint() if score_calibration is not None else None
    if calibration["score_calibration"] == current:
        return calibration
    now = "none" if current is None else "another"
    logger.warning("ignoring %s: its threshold was set under another score calibration than the run's (%s now: "
                   "score_calibration.safetensors was removed or replaced, or two `kgzsl calibrate` ran at once, or "
                   "one was interrupted); run `kgzsl calibrate RUN --images DIR` again, with --abstain-only to keep "
                   "the scores as they are, to use abstain", Path(run_dir) / ABSTAIN_FILE, now)
    return None


def missing_calibration(run_dir: str | Path | None) -> InputError:
    """The error for ``abstain=True`` on a classifier without a calibration, saying how to get one."""
    if run_dir is None:
        return InputError("abstain=True needs a calibrated threshold: calibrate with "
                          "kgzsl.tasks.abstain.calibrate_abstain(clf, images=...) or clf.set_abstain({'threshold': ...})",
                          cli_message="--abstain needs a calibrated threshold: run `kgzsl calibrate RUN --images DIR` first")
    path = Path(run_dir) / ABSTAIN_FILE
    state = "holds no usable threshold" if path.is_file() else "is missing"
    fix = (f"run `kgzsl calibrate RUN --images DIR` on in-set images first: DIR with one sub-folder per class "
           f"named by a label or a wnid, or any folder with --labels naming the classes its images show ({path} {state}; "
           "a folder of unlabelled images only calibrates the scores)")
    return InputError(f"abstain=True needs a calibrated threshold: {fix}",
                      cli_message=f"--abstain needs a calibrated threshold: {fix}")


def abstain_scores(head: Any, features: Any) -> Any:
    """``[B]`` the score the threshold is compared with: each image's best candidate logit under the
    calibrated head, before the list is fitted to the user's images.

    A fitted list (:class:`~kgzsl.inference.adaptation.AdaptedHead`) ranks by rows scaled to its own
    fit, whose logits are on another scale for every list; the head it was fitted from scores every
    list on the scale the threshold was set on.

    Args:
        head: A label list's head (``logits``; an adapted one also has ``base``).
        features: ``[B, D]`` pooled features.
    """
    return getattr(head, "base", head).logits(features).max(dim=1).values


def abstain_fields(calibration: Mapping[str, Any], max_logit: float) -> dict[str, Any]:
    """``{"abstained", "max_logit", "threshold"}`` for an image whose best candidate logit is ``max_logit``."""
    threshold = float(calibration["threshold"])
    return {"abstained": bool(max_logit < threshold), "max_logit": round(float(max_logit), 6),
            "threshold": round(threshold, 6)}
