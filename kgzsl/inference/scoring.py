"""How candidates are scored: the backbone's own rows for its classes, predicted rows for the rest.

A predicted row (unit norm, validation cosine to the real rows about 0.26 for DGP) is a weak
copy of a real one: scoring the backbone's own 1,000 classes with predicted rows makes a photo
of a seen class *less* recognisable than the plain CNN does. So a candidate that is one of the
backbone's classes keeps its real row ``[w | b]``, and only the other candidates use predicted
rows. How the two kinds meet depends on whether the user has calibrated the run:

- **Without images of the user's** (the default), every row stays on the backbone's own scale:
  its real rows as they are, the predicted rows (trained to regress them) times ``row_scale``,
  the mean norm of the real rows. No reference images are involved.
- **After** ``kgzsl calibrate RUN --images DIR`` (:func:`fit_calibration`, stored in the run as
  ``score_calibration.safetensors``), every row is centred on the user's unlabelled images, the
  hubness correction: the predicted rows are **standardised per class**
  (:func:`standardised_rows`),

  .. math::
      z_c(x) = m + s \\, \\frac{\\hat r_c \\cdot (x - \\mu)}{\\sigma_c},
      \\qquad \\sigma_c^2 = \\hat r_c^\\top \\Sigma \\, \\hat r_c

  where ``mu`` is the mean of the user's features and ``Sigma`` their covariance (shrunk towards
  ``trace(Sigma)/D · I`` with weight ``D / (D + M)`` for ``M`` images), and ``m`` and ``s`` the
  median over the backbone's classes of the mean and standard deviation of their real logits on
  the same features; the backbone's own rows keep their weights and get the bias that puts their
  mean logit at ``m`` (:func:`centred_rows`). Both are still rows of a linear head. The
  calibration also keeps a sample of the features, to which a short label list's candidates are
  then fitted (:mod:`kgzsl.inference.adaptation`).

Why no centring by default: a generic reference (the photos bundled with scikit-image and
scikit-learn, under flips and crops) was measured as the default and lost on real colour photos
(B5 all-photo top-1 0.452 against 0.481 without it; seen 0.906 against 0.943; unseen 0.321
against 0.348) while it gained on grey Fashion-MNIST (B1 zsl-8 0.384 against 0.324): a data-free
correction must gain on both to be the default. On the user's own images centring gains where the
domain is far from ImageNet's (B1 after ``calibrate`` on 2,000 unlabelled train images: zsl-8
0.599, all ten classes 0.518).

Example:
    >>> calib = fit_calibration(features, backbone.classifier_rows(), source="my photos")
    >>> matrix = scoring_rows(clf.rows, seen_index, backbone.classifier_rows(), calib, clf.row_scale)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kgzsl.errors import InputError
from kgzsl.utils.io import load_tensors, read_tensor_metadata, save_tensors

__all__ = ["CALIBRATION_FILE", "STORED_FEATURES", "ScoreCalibration", "centred_rows", "fit_calibration",
           "predicted_rows", "scoring_rows", "standardised_rows"]

logger = logging.getLogger(__name__)

#: the run file that holds a calibration fitted on the user's images
CALIBRATION_FILE = "score_calibration.safetensors"
_MAX_RANK = 256  # directions of the reference covariance kept (an SVD of the centred features)
#: most feature vectors a calibration stores for adapting label lists (20 MB at 1,280-d)
STORED_FEATURES = 4096


@dataclass(frozen=True)
class ScoreCalibration:
    """Statistics of the user's unlabelled images, on which every score row is centred (``kgzsl calibrate``).

    Attributes:
        mean: ``[D]`` mean pooled feature of the images (``mu``).
        spread: ``[D, r]`` factor of their covariance (``Sigma = spread @ spread.T``).
        target_mean: Median over the backbone's classes of their mean real logit (``m``).
        target_std: Median of their logits' standard deviation (``s``).
        source: Where the reference images came from.
        images: How many feature vectors were used.
        features: ``[S, D]`` a sample of at most :data:`STORED_FEATURES` of them (in order, or a
            seeded random subset), which :mod:`~kgzsl.inference.adaptation` fits the candidates of a
            label list on; None in calibrations written before it was kept.
    """

    mean: torch.Tensor
    spread: torch.Tensor
    target_mean: float
    target_std: float
    source: str
    images: int
    features: torch.Tensor | None = None

    @property
    def shrinkage(self) -> float:
        """Weight of the isotropic part of the covariance, ``D / (D + M)``: a few reference images
        span only a few directions, and a row nearly orthogonal to them must not get a huge gain."""
        return self.mean.numel() / (self.mean.numel() + max(self.images, 1))

    @property
    def isotropic_variance(self) -> float:
        """Mean variance per feature dimension of the reference (``trace(Sigma) / D``)."""
        return float(self.spread.pow(2).sum()) / self.mean.numel()

    def fingerprint(self) -> str:
        """A short digest of the statistics (the same after :meth:`save` and :meth:`load`): an abstain
        threshold records the calibration its logits were computed under."""
        digest = hashlib.sha256(self.mean.detach().float().cpu().contiguous().numpy().tobytes())
        digest.update(f"{self.target_mean!r}|{self.target_std!r}|{self.images}".encode())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write as safetensors (atomically)."""
        tensors = {"mean": self.mean.float().contiguous(), "spread": self.spread.float().contiguous()}
        if self.features is not None:
            tensors["features"] = self.features.float().contiguous()
        save_tensors(Path(path), tensors,
                     metadata={"target_mean": repr(self.target_mean), "target_std": repr(self.target_std),
                               "source": self.source, "images": str(self.images)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ScoreCalibration:
        """Read a file written by :meth:`save` (never unpickled).

        Raises:
            InputError: If a field is missing or malformed.
        """
        tensors, meta = load_tensors(Path(path)), read_tensor_metadata(Path(path))
        kept = tensors.get("features")
        if kept is not None and "mean" in tensors and (kept.ndim != 2 or kept.size(1) != tensors["mean"].numel()):
            raise InputError(f"{path} holds features of shape {tuple(kept.shape)}, not [S, "
                             f"{tensors['mean'].numel()}]; redo it with `kgzsl calibrate RUN --images DIR`")
        try:
            return cls(tensors["mean"], tensors["spread"], float(meta["target_mean"]), float(meta["target_std"]),
                       meta.get("source", "?"), int(meta.get("images", 0)), tensors.get("features"))
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path} is not a kgzsl score calibration ({exc}); redo it with "
                             "`kgzsl calibrate RUN --images DIR`") from None


def fit_calibration(features: torch.Tensor, real_rows: torch.Tensor, source: str) -> ScoreCalibration:
    """Reference statistics from pooled features of unlabelled images.

    Args:
        features: ``[M, D]`` pooled backbone features (``M >= 2``).
        real_rows: ``[K, D + 1]`` the backbone's own rows ``[W | b]``.
        source: A description kept with the calibration.

    Raises:
        InputError: If fewer than 2 feature vectors, or the sizes disagree.
    """
    features = features.detach().double().cpu()
    if features.ndim != 2 or features.size(0) < 2:
        raise InputError(f"a score calibration needs at least 2 images, got {features.size(0) if features.ndim else 0}")
    if features.size(1) + 1 != real_rows.size(1):
        raise InputError(f"features are {features.size(1)}-d but the rows are {real_rows.size(1)} wide")
    rows = real_rows.detach().double().cpu()
    logits = features @ rows[:, :-1].T + rows[:, -1]
    mean = features.mean(0)
    centred = (features - mean) / (features.size(0) - 1) ** 0.5
    u, sv, vt = torch.linalg.svd(centred, full_matrices=False)
    rank = int(min(_MAX_RANK, (sv > sv[0] * 1e-6).sum()))
    spread = (vt[:rank].T * sv[:rank]).float()
    keep = features if features.size(0) <= STORED_FEATURES else \
        features[torch.randperm(features.size(0), generator=torch.Generator().manual_seed(0))[:STORED_FEATURES]]
    calib = ScoreCalibration(mean.float(), spread, float(logits.mean(0).median()), float(logits.std(0).median()),
                             source, int(features.size(0)), keep.float())
    logger.info("score calibration on %d images (%s): real logits mean %.3f, spread %.3f", calib.images, source,
                calib.target_mean, calib.target_std)
    return calib


def scoring_rows(predicted: torch.Tensor, seen_nodes: torch.Tensor, real_rows: torch.Tensor,
                 calib: ScoreCalibration | None, row_scale: float) -> torch.Tensor:
    """The ``[N, D + 1]`` rows a linear head scores every node with.

    Args:
        predicted: ``[N, D + 1]`` unit predicted rows, one per node.
        seen_nodes: ``[K]`` node index of each backbone class (-1 where the class is not a node).
        real_rows: ``[K, D + 1]`` the backbone's rows, in the same order.
        calib: Statistics of the user's images (every row is then centred on them), or None
            (every row on the backbone's own scale).
        row_scale: Mean norm of the backbone's rows, the factor of the predicted rows when ``calib``
            is None.
    """
    out = predicted_rows(predicted, calib, row_scale)
    present = seen_nodes >= 0
    real = real_rows[present.to(real_rows.device)].float().to(out.device)
    out[seen_nodes[present].to(out.device)] = real if calib is None else centred_rows(real, calib)
    return out


def predicted_rows(rows: torch.Tensor, calib: ScoreCalibration | None, row_scale: float) -> torch.Tensor:
    """New ``[K, D + 1]`` score rows of nodes that are not backbone classes: standardised on the
    user's images (:func:`standardised_rows`), or ``rows * row_scale`` without them."""
    return rows.float() * row_scale if calib is None else standardised_rows(rows, calib)


def centred_rows(rows: torch.Tensor, calib: ScoreCalibration) -> torch.Tensor:
    """``rows`` ``[K, D + 1]`` with their bias set so that each mean logit over the user's images is ``m``."""
    out = rows.float().clone()
    out[:, -1] = calib.target_mean - out[:, :-1] @ calib.mean.to(out.device)
    return out


def standardised_rows(rows: torch.Tensor, calib: ScoreCalibration) -> torch.Tensor:
    """``[K, D + 1]`` rows whose logits have, over the reference features, mean ``m`` and spread ``s``."""
    w = rows[:, :-1].float()
    mean, spread = calib.mean.to(w.device), calib.spread.to(w.device)
    sigma = ((1 - calib.shrinkage) * (w @ spread).pow(2).sum(1)
             + calib.shrinkage * calib.isotropic_variance * w.pow(2).sum(1)).sqrt().clamp(min=1e-12)
    gain = calib.target_std / sigma
    out = torch.empty(rows.shape, dtype=torch.float32, device=w.device)
    out[:, :-1] = w * gain[:, None]
    out[:, -1] = calib.target_mean - gain * (w @ mean)
    return out
