"""Images in, one record per image out: the batching behind ``ZeroShotClassifier.predict``.

Images are loaded and transformed a batch at a time; one that cannot be loaded gets an
``{"image", "error"}`` record and the others of its batch are still classified. Each classified
image gets its ``k`` best candidates, with the synset each label was scored by.

Example:
    >>> records = classify_images(clf.backbone, head, resolved, ["a.jpg", "b.png"], k=3,
    ...                           wnids=clf.wnids, names=clf.names)
    >>> records[0]["predictions"][0]
    {'label': 'cat', 'wnid': 'n02121620', 'synset': 'cat.n.01', 'score': 0.93}
"""

from __future__ import annotations

import logging
import numbers
from typing import Any, Iterator, Mapping, Sequence

import torch

from kgzsl.errors import InputError
from kgzsl.inference.abstain_rule import abstain_fields, abstain_scores
from kgzsl.inference.labels import ResolvedLabel
from kgzsl.vision.images import ImageSource, describe_image, is_tensor_batch, load_batch

__all__ = ["TOP_K_EVERY_CLASS", "check_top_k", "classify_images", "split_pixel_batch", "top_candidates"]

logger = logging.getLogger(__name__)

TOP_K_EVERY_CLASS = 5  # answers listed by default without candidate labels (of thousands of classes)


def check_top_k(top_k: Any, default: int) -> int:
    """``top_k`` checked: a positive integer (numpy's included), or ``default`` for None.

    Raises:
        InputError: For a bool, a non-integer or a number below 1.
    """
    if top_k is None:
        return default
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise InputError(f"top_k must be an integer >= 1 (or None for the default), got {top_k!r}")
    return int(top_k)


def top_candidates(head: Any, resolved: Sequence[ResolvedLabel], features: torch.Tensor,
                   k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[int]]]:
    """The ``k`` best candidates of each feature row.

    Args:
        head: A candidate head (``topk``, or ``choose`` and ``senses`` when labels have several senses).
        resolved: The resolved labels, in the head's column order.
        features: ``[B, D]`` pooled backbone features.
        k: How many candidates to keep.

    Returns:
        ``(scores [B, k], columns [B, k], logits [B, k], nodes)``: softmax scores over every
        candidate, candidate columns, their logits, and per row the node each label was scored by.
    """
    if hasattr(head, "choose"):  # several senses per label: report the one used
        logits, choice = head.choose(features)
        best, top = logits.topk(k, dim=1)
        scores = logits.softmax(dim=1).gather(1, top)
        nodes = [[head.senses[c][int(choice[row, c])] for c in top[row].tolist()] for row in range(top.size(0))]
    else:
        scores, top, best = head.topk(features, k)
        nodes = [[resolved[c].index for c in top[row].tolist()] for row in range(top.size(0))]
    return scores, top, best, nodes


def warn_untransformed(batch: torch.Tensor, transform: Any) -> None:
    """Log a warning when a ``[B, 3, H, W]`` batch, taken as already transformed, does not have the
    size the backbone's ``transform`` crops to (it is probably raw pixels: they are not resized or
    normalised, and the scores are off without an error)."""
    crop = getattr(transform, "crop_size", None)
    if not crop:
        return
    side = (int(crop[0]), int(crop[-1]))
    if tuple(batch.shape[-2:]) != side:
        logger.warning("a %s tensor is taken as a batch already transformed, but the backbone's transform "
                       "gives %dx%d crops: pass raw images as a list of [3, H, W] tensors (or apply "
                       "clf.backbone.transform) to have them resized and normalised",
                       "x".join(str(n) for n in batch.shape), *side)


def split_pixel_batch(images: Any, transform: Any) -> Any:
    """A ``[B, C, H, W]`` tensor of raw pixels as a list of ``B`` images, anything else as it is.

    A batch already transformed is floating point, with the size ``transform`` crops to. A uint8
    batch (torchvision's ``read_image`` stacked) is raw pixels, and so is a floating one of
    another size whose values all lie in [0, 1]: each of its images is then resized and
    normalised like an image given alone.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        return images
    if images.dtype == torch.uint8:
        return list(images.unbind(0))
    crop = getattr(transform, "crop_size", None)
    if images.is_floating_point() and crop and tuple(images.shape[-2:]) != (int(crop[0]), int(crop[-1])) \
            and images.numel() and bool(((images >= 0) & (images <= 1)).all()):
        logger.info("a %s tensor with values in [0, 1] is not the backbone's %dx%d input: its images are resized "
                    "and normalised one by one", "x".join(str(n) for n in images.shape), int(crop[0]), int(crop[-1]))
        return list(images.unbind(0))
    return images


def _chunks(images: Any, batch_size: int) -> tuple[list[Any], Iterator[tuple[list[int] | None, Any, int]]]:
    """The sources of ``images`` and their batches ``(indices or None for sources to load, batch, offset)``."""
    if is_tensor_batch(images):
        sources: list[Any] = [f"tensor[{i}]" for i in range(images.size(0))]
        return sources, iter([(list(range(s, min(s + batch_size, len(sources)))), images[s:s + batch_size], s)
                              for s in range(0, len(sources), batch_size)])
    sources = list(images) if isinstance(images, (list, tuple)) else [images]
    return sources, ((None, sources[s:s + batch_size], s) for s in range(0, len(sources), batch_size))


def classify_images(backbone: Any, head: Any, resolved: Sequence[ResolvedLabel],
                    images: ImageSource | Sequence[ImageSource] | torch.Tensor, *, k: int, wnids: Sequence[str],
                    names: Sequence[str], batch_size: int = 32, max_pixels: int = 100_000_000,
                    abstain: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per image: ``{"image", "predictions"}``, or ``{"image", "error"}`` for one that failed.

    Args:
        backbone: The frozen backbone (``transform``, ``device``, called for pooled features).
        head: The candidate head of the label list (see :func:`top_candidates`).
        resolved: Its resolved labels.
        images: One image, a list of them, a ``[B, 3, H, W]`` tensor already transformed, or a
            ``[B, C, H, W]`` tensor of raw pixels (:func:`split_pixel_batch`).
        k: Candidates per image.
        wnids: Node ids, to name the synset each label was scored by.
        names: Synset names, likewise.
        batch_size: Images per backbone call.
        max_pixels: Larger images are refused before decoding.
        abstain: A calibrated max-logit threshold: each record then also gets ``"abstained"``,
            ``"max_logit"`` and ``"threshold"``.
    """
    images = split_pixel_batch(images, backbone.transform)
    if is_tensor_batch(images):
        warn_untransformed(images, backbone.transform)
    sources, chunks = _chunks(images, batch_size)
    records: list[dict[str, Any]] = [{"image": describe_image(s)} for s in sources]
    for idx, chunk, offset in chunks:
        if idx is None:
            batch, ok, errors = load_batch(chunk, backbone.transform, max_pixels=max_pixels)
            for j, msg in errors.items():
                records[offset + j]["error"] = msg
            idx = [offset + j for j in ok]
        else:
            batch = chunk
        if batch is None or not idx:
            continue
        with torch.inference_mode():  # exact top k; see kgzsl.inference.head for the int8 shortlist
            features = backbone(batch.to(backbone.device))
            scores, top, best, nodes = top_candidates(head, resolved, features, k)
            if abstain is not None:  # the fitted rows of an adapted list rank; its calibrated head decides
                best = abstain_scores(head, features)[:, None] if hasattr(head, "base") else best
        for row, i in enumerate(idx):
            records[i]["predictions"] = [
                {"label": resolved[c].label, "wnid": wnids[n], "synset": names[n], "score": round(float(s), 6)}
                for s, c, n in zip(scores[row].tolist(), top[row].tolist(), nodes[row])]
            if abstain is not None:
                records[i].update(abstain_fields(abstain, float(best[row, 0])))
    return records
