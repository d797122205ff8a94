"""How candidates are scored: the backbone's own rows for its classes, standardised predicted rows for the rest.

A predicted row (unit norm, validation cosine to the real rows about 0.25 for DGP) is a weak
copy of a real one: scoring the backbone's own 1,000 classes with predicted rows makes a photo
of a seen class *less* recognisable than the plain CNN does. So a candidate that is one of the
backbone's classes keeps its real row ``[w | b]``, and only the other candidates use predicted
rows. Their logits are put on the real logits' scale by **per-class standardisation** over a
reference set of pooled image features (:class:`ScoreCalibration`):

.. math::
    z_c(x) = m + s \\, \\frac{\\hat r_c \\cdot (x - \\mu)}{\\sigma_c},
    \\qquad \\sigma_c^2 = \\hat r_c^\\top \\Sigma \\, \\hat r_c

where ``mu`` is the reference features' mean and ``Sigma`` their covariance, shrunk towards
``trace(Sigma)/D · I`` with weight ``D / (D + M)`` for ``M`` images (a few images span few
directions), and ``m`` and ``s``
the median over the backbone's classes of the mean and standard deviation of their real logits
on the same features. Every predicted class then has, over the reference images, the mean and
spread of a typical real class: centring on ``mu`` removes the hubness of rows that score high on
every image, and the division by ``sigma_c`` keeps a class with a large row from winning
everywhere. ``z_c`` is linear in ``x``, so each candidate is still one row of a linear head.

The reference is, by default, the photos that ship with the installed packages
(:func:`kgzsl.vision.samples.demo_photos`) under a fixed set of flips and crops; ``kgzsl
calibrate RUN --images DIR`` replaces it with the user's own unlabelled images
(:func:`fit_calibration`), stored in the run as ``score_calibration.safetensors``. On the user's
own images the backbone's rows are centred too (their bias set so that their mean logit is
``m``): the hubness correction then applies to every candidate, and a seen class the backbone
over-predicts in that domain no longer takes most images (Fashion-MNIST, all ten classes:
top-1 0.336 -> 0.518). On the generic bundled photos they stay as the backbone has them (centring
on a dozen photos cost seen photos 2 points on B5).

Example:
    >>> calib = fit_calibration(features, backbone.classifier_rows(), source="my photos")
    >>> matrix = scoring_rows(clf.rows, seen_index, backbone.classifier_rows(), calib)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError, KgzslError
from kgzsl.inference.head import LinearHead
from kgzsl.utils.io import load_tensors, read_tensor_metadata, save_tensors

__all__ = ["CALIBRATION_FILE", "GroupHead", "ScoreCalibration", "centred_rows", "claimed_seen", "default_calibration",
           "fit_calibration", "group_logits", "reference_features", "scoring_rows", "seen_ancestors",
           "standardised_rows"]

logger = logging.getLogger(__name__)

#: the run file that holds a calibration fitted on the user's images
CALIBRATION_FILE = "score_calibration.safetensors"
_MAX_RANK = 256  # directions of the reference covariance kept (an SVD of the centred features)


@dataclass(frozen=True)
class ScoreCalibration:
    """Reference statistics that put predicted rows on the real rows' logit scale.

    Attributes:
        mean: ``[D]`` mean pooled feature of the reference images (``mu``).
        spread: ``[D, r]`` factor of their covariance (``Sigma = spread @ spread.T``).
        target_mean: Median over the backbone's classes of their mean real logit (``m``).
        target_std: Median of their logits' standard deviation (``s``).
        source: Where the reference images came from.
        images: How many feature vectors were used.
        user_images: True when the reference is the user's own images (``kgzsl calibrate``), False
            for the bundled photos; on the user's images the backbone's rows are centred too.
    """

    mean: torch.Tensor
    spread: torch.Tensor
    target_mean: float
    target_std: float
    source: str
    images: int
    user_images: bool = True

    @property
    def shrinkage(self) -> float:
        """Weight of the isotropic part of the covariance, ``D / (D + M)``: a few reference images
        span only a few directions, and a row nearly orthogonal to them must not get a huge gain."""
        return self.mean.numel() / (self.mean.numel() + max(self.images, 1))

    @property
    def isotropic_variance(self) -> float:
        """Mean variance per feature dimension of the reference (``trace(Sigma) / D``)."""
        return float(self.spread.pow(2).sum()) / self.mean.numel()

    def save(self, path: str | Path) -> Path:
        """Write as safetensors (atomically)."""
        save_tensors(Path(path), {"mean": self.mean.float().contiguous(), "spread": self.spread.float().contiguous()},
                     metadata={"target_mean": repr(self.target_mean), "target_std": repr(self.target_std),
                               "source": self.source, "images": str(self.images),
                               "user_images": "1" if self.user_images else "0"})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ScoreCalibration:
        """Read a file written by :meth:`save` (never unpickled).

        Raises:
            InputError: If a field is missing or malformed.
        """
        tensors, meta = load_tensors(Path(path)), read_tensor_metadata(Path(path))
        try:
            return cls(tensors["mean"], tensors["spread"], float(meta["target_mean"]), float(meta["target_std"]),
                       meta.get("source", "?"), int(meta.get("images", 0)), meta.get("user_images", "1") != "0")
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path} is not a kgzsl score calibration ({exc}); redo it with "
                             "`kgzsl calibrate RUN --images DIR`") from None


def fit_calibration(features: torch.Tensor, real_rows: torch.Tensor, source: str,
                    user_images: bool = True) -> ScoreCalibration:
    """Reference statistics from pooled features of unlabelled images.

    Args:
        features: ``[M, D]`` pooled backbone features (``M >= 2``).
        real_rows: ``[K, D + 1]`` the backbone's own rows ``[W | b]``.
        source: A description kept with the calibration.
        user_images: The images are the user's own (False: the bundled reference photos).

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
    calib = ScoreCalibration(mean.float(), spread, float(logits.mean(0).median()), float(logits.std(0).median()),
                             source, int(features.size(0)), user_images)
    logger.info("score calibration on %d images (%s): real logits mean %.3f, spread %.3f", calib.images, source,
                calib.target_mean, calib.target_std)
    return calib


def scoring_rows(predicted: torch.Tensor, seen_nodes: torch.Tensor, real_rows: torch.Tensor,
                 calib: ScoreCalibration) -> torch.Tensor:
    """The ``[N, D + 1]`` rows a linear head scores every node with.

    Args:
        predicted: ``[N, D + 1]`` unit predicted rows, one per node.
        seen_nodes: ``[K]`` node index of each backbone class (-1 where the class is not a node).
        real_rows: ``[K, D + 1]`` the backbone's rows, in the same order.
        calib: The reference statistics; when they come from the user's images, the backbone's
            rows are centred on them (:func:`centred_rows`).
    """
    out = standardised_rows(predicted, calib)
    present = seen_nodes >= 0
    real = real_rows[present.to(real_rows.device)].float().to(out.device)
    out[seen_nodes[present].to(out.device)] = centred_rows(real, calib) if calib.user_images else real
    return out


def centred_rows(rows: torch.Tensor, calib: ScoreCalibration) -> torch.Tensor:
    """``rows`` ``[K, D + 1]`` with their bias set so that each mean logit over the reference is ``m``."""
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


# flips and crops of the bundled photos: (horizontal flip, crop share of the shorter side, anchor)
_VIEWS = [(flip, share, anchor) for flip in (False, True) for share in (1.0, 0.7)
          for anchor in ("centre", "top-left", "bottom-right")]


def default_calibration(backbone: Any) -> ScoreCalibration:
    """The calibration on the bundled photos (:func:`reference_features`), cached per backbone and weights.

    The cache is a safetensors file in ``calibration/`` beside the feature cache folder
    (:func:`kgzsl.vision.extract.default_cache_dir`); a cache that cannot be read or written is
    recomputed (about 2 s on 2 cores).
    """
    import hashlib

    from kgzsl.vision.extract import default_cache_dir

    rows = backbone.classifier_rows().detach().float().cpu().contiguous()
    key = hashlib.sha256(f"{backbone.name}|{getattr(backbone, 'weights', '')}|{len(_VIEWS)}|bundled".encode()
                         + rows.numpy().tobytes()[:1 << 20]).hexdigest()[:20]
    path = default_cache_dir().parent / "calibration" / f"reference-{backbone.name}-{key}.safetensors"
    if path.is_file():
        try:
            return ScoreCalibration.load(path)
        except KgzslError as exc:  # a damaged cache is recomputed
            logger.warning("ignoring the damaged reference cache %s (%s)", path, exc)
    feats, source = reference_features(backbone)
    calib = fit_calibration(feats, rows, source, user_images=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        calib.save(path)
    except OSError as exc:
        logger.info("could not cache the reference calibration in %s (%s)", path, exc)
    return calib


def reference_features(backbone: Any) -> tuple[torch.Tensor, str]:
    """Pooled features of the photos bundled with the installed packages, under fixed flips and crops.

    Returns:
        ``([M, D] features, a description)``.

    Raises:
        InputError: If no bundled photo is installed (install ``kgzsl[demo]`` or run
            ``kgzsl calibrate RUN --images DIR``).
    """
    from PIL import ImageOps

    from kgzsl.vision.images import load_image
    from kgzsl.vision.samples import demo_photos

    photos = demo_photos()
    if not photos:
        raise InputError("no bundled reference photos are installed: install kgzsl[demo], or calibrate the run on "
                         "your own images with `kgzsl calibrate RUN --images DIR`")
    batch = []
    for path in photos:
        image = load_image(path)
        for flip, share, anchor in _VIEWS:
            view = ImageOps.mirror(image) if flip else image
            side = int(min(view.size) * share)
            x0 = {"centre": (view.width - side) // 2, "top-left": 0, "bottom-right": view.width - side}[anchor]
            y0 = {"centre": (view.height - side) // 2, "top-left": 0, "bottom-right": view.height - side}[anchor]
            batch.append(backbone.transform(view.crop((x0, y0, x0 + side, y0 + side))))
    with torch.inference_mode():
        feats = torch.cat([backbone(torch.stack(batch[i:i + 32])) for i in range(0, len(batch), 32)])
    return feats.cpu(), f"{len(photos)} bundled photos x {len(_VIEWS)} views"


def seen_ancestors(run_dir: Path | None, wnids: list[str], seen: torch.Tensor) -> dict[int, dict[int, int]]:
    """For each seen node, its ancestors with their hop distance (itself at 0).

    Over the hierarchical edges of the run's own graph copy when it has one
    (:meth:`kgzsl.graph.KnowledgeGraph.ancestors`), else over WordNet's hypernyms.
    """
    from kgzsl.graph.ancestors import ancestor_distances

    index = {w: i for i, w in enumerate(wnids)}
    parents: list[list[int]] = [[] for _ in wnids]
    if run_dir is not None and (run_dir / "edges.tsv").is_file() and (run_dir / "manifest.json").is_file():
        from kgzsl.graph import KnowledgeGraph

        graph = KnowledgeGraph.load(run_dir)
        for w, ups in zip(graph.wnids, graph.parents):
            if w in index:
                parents[index[w]] = [index[graph.wnids[u]] for u in ups if graph.wnids[u] in index]
    else:
        from kgzsl.graph.wordnet import load_wordnet, synset_from_wnid

        wn = load_wordnet()
        for w, i in index.items():
            try:
                synset = synset_from_wnid(wn, w)
            except ValueError:
                continue
            parents[i] = [index[p] for s in synset.hypernyms() + synset.instance_hypernyms()
                          if (p := f"n{s.offset():08d}") in index]
    return {int(j): ancestor_distances(parents, int(j)) for j in seen.tolist() if j >= 0}


def claimed_seen(candidates: list[int], ancestors: dict[int, dict[int, int]]) -> list[list[int]]:
    """Per candidate, the seen nodes it stands for besides itself.

    A seen node belongs to the nearest candidate that is it or one of its ancestors; a candidate
    that is a seen node itself claims nothing more; a candidate scores as the best of itself and
    the classes it claims (:func:`group_logits`). So with ``["cat", "lynx"]`` the photo of a
    tabby counts for "cat" (tabby is a cat and not a lynx), and "lynx" keeps only the lynx.
    A claimed class enters its candidate's score with its real row centred on the reference
    (:func:`centred_rows`), so that a class the backbone over-predicts on the user's images does
    not carry its bias into the candidate.
    """
    position = {node: c for c, node in enumerate(candidates)}
    claims: list[list[int]] = [[] for _ in candidates]
    for node, ups in ancestors.items():
        owners = [(d, position[a]) for a, d in ups.items() if a in position]
        if owners:
            d, c = min(owners)
            if d > 0:
                claims[c].append(node)
    return claims


def group_logits(logits: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """``[B, G]``: per group, the largest of its columns of ``logits`` ``[B, M]``.

    The best member, not a log-sum-exp: a sum would let a candidate with many members (``"dog"``
    claims 118 breeds) win on their number alone.
    """
    width = max(len(g) for g in groups)
    index = torch.tensor([g + [logits.size(1)] * (width - len(g)) for g in groups], device=logits.device)
    padded = torch.cat([logits, logits.new_full((logits.size(0), 1), float("-inf"))], dim=1)
    return padded[:, index].amax(dim=2)


class GroupHead:
    """Labels scored over several rows: each label's logit is the best of its senses', and each
    sense's the best of its own logit and those of the seen classes below it that no other
    candidate claims (:func:`claimed_seen`).

    Args:
        every: ``[N, D + 1]`` score rows of every node.
        extra: The seen nodes some sense claims, in the order of ``claimed``.
        claimed: ``[len(extra), D + 1]`` rows a claimed seen node enters its candidate's score with.
        senses: Per label, its sense nodes (the default sense first).
        claims: Per sense (in the order of ``senses`` flattened), the seen nodes it stands for.
    """

    def __init__(self, every: torch.Tensor, extra: list[int], claimed: torch.Tensor, senses: list[list[int]],
                 claims: list[list[int]]) -> None:
        flat = [n for ns in senses for n in ns]
        own = list(dict.fromkeys(flat))
        column = {n: i for i, n in enumerate(own)}
        below = {j: len(own) + i for i, j in enumerate(extra)}
        rows = [every[torch.tensor(own, dtype=torch.long, device=every.device)]]
        if extra:
            rows.append(claimed.to(every.device))
        self.linear = LinearHead(torch.cat(rows), int8=False)
        self.groups = [[column[n]] + [below[j] for j in claim] for n, claim in zip(flat, claims)]
        width, start, self.members = max(len(ns) for ns in senses), 0, []
        for ns in senses:  # per label, its senses' positions in `groups`, padded with a -inf column
            self.members.append(list(range(start, start + len(ns))) + [len(flat)] * (width - len(ns)))
            start += len(ns)
        self.senses = senses

    def choose(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, C] label logits, [B, C] position of the sense that gave each one)``."""
        sense = group_logits(self.linear.logits(features), self.groups)
        sense = torch.cat([sense, sense.new_full((sense.size(0), 1), float("-inf"))], dim=1)
        return sense[:, torch.tensor(self.members, device=sense.device)].max(dim=2)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` label logits."""
        return self.choose(features)[0]

    def topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(probabilities, indices, logits)`` of the k best labels, as :meth:`LinearHead.topk`."""
        logits = self.logits(features)
        top, idx = logits.topk(k, dim=1)
        return logits.softmax(dim=1).gather(1, idx), idx, top
