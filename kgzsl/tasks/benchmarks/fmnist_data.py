"""Fashion-MNIST as a zero-shot test set: the idx files, the class → WordNet table, cached features.

Eight of the ten Fashion-MNIST classes are not ImageNet-1k classes, so an ImageNet-1k backbone
has no classifier row for them. Images are 28x28 gray; they are replicated to 3 channels and go
through the backbone's own preprocessing. Pooled features are extracted once per (backbone,
split) and cached as safetensors.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from kgzsl.errors import InputError, NotFoundError
from kgzsl.utils.io import load_tensors, save_tensors

__all__ = ["FMNIST_DIR", "FMNIST_CLASSES", "FmnistClass", "load_fmnist", "fmnist_features", "stratified_subset"]

logger = logging.getLogger(__name__)

FMNIST_DIR = Path(os.environ.get("KGZSL_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))


@dataclass(frozen=True)
class FmnistClass:
    """One Fashion-MNIST class and its WordNet 3.0 synset."""

    label: int
    name: str
    synset: str
    wnid: str
    seen: bool  # an ImageNet-1k class


FMNIST_CLASSES = [
    FmnistClass(0, "T-shirt/top", "jersey.n.03", "n03595614", True),
    FmnistClass(1, "Trouser", "trouser.n.01", "n04489008", False),
    FmnistClass(2, "Pullover", "pullover.n.01", "n04021028", False),
    FmnistClass(3, "Dress", "dress.n.01", "n03236735", False),
    FmnistClass(4, "Coat", "coat.n.01", "n03057021", False),
    FmnistClass(5, "Sandal", "sandal.n.01", "n04133789", True),
    FmnistClass(6, "Shirt", "shirt.n.01", "n04197391", False),
    FmnistClass(7, "Sneaker", "gym_shoe.n.01", "n03472535", False),
    FmnistClass(8, "Bag", "bag.n.04", "n02774152", False),
    FmnistClass(9, "Ankle boot", "boot.n.01", "n02872752", False),
]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # unsigned byte data
        raise InputError(f"{path} is not an idx file of unsigned bytes (magic {magic:#x})")
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fmnist(split: str = "test", root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read Fashion-MNIST images ``[N, 28, 28]`` uint8 and labels ``[N]``.

    Args:
        split: ``test`` (10,000 images) or ``train`` (60,000).
        root: Folder with the idx files; default ``/usr/share/datasets/fashion-mnist``
            (Debian's ``dataset-fashion-mnist``) or ``$KGZSL_FMNIST_DIR``.

    Raises:
        FileNotFoundError: If the files are missing, naming the package to install.
    """
    root = Path(root) if root else FMNIST_DIR
    prefix = {"test": "t10k", "train": "train"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    files = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [root / f"{prefix}-{kind}.gz", root / f"{prefix}-{kind}"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise NotFoundError(f"Fashion-MNIST {split} files not found in {root}; install them with "
                                "`apt-get install dataset-fashion-mnist` or set KGZSL_FMNIST_DIR")
        files.append(found)
    images, labels = _read_idx(files[0]), _read_idx(files[1])
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"{files[0]} has {images.shape[0]} images but {files[1]} {labels.shape[0]} labels")
    return images, labels


def stratified_subset(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` random images of every class."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def _cache_name(split: str, subset: str, backbone: Any) -> str:
    """The feature cache's file name: the split, the subset, the backbone and its weights (a readable
    start of their description, and a digest of all of it: two fine-tunes of one run differ at its end)."""
    described = str(getattr(backbone, "weights", ""))
    weights = described.replace("/", "_").replace(" ", "_")[:40] + "-" + hashlib.sha1(described.encode()).hexdigest()[:10]
    return f"fmnist-{split}-{subset}-{backbone.name}-{weights}.safetensors"


def fmnist_features(backbone: Any, split: str = "test", indices: np.ndarray | None = None,
                    cache_dir: str | os.PathLike | None = None, batch_size: int = 64,
                    progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled backbone features of Fashion-MNIST images, cached on disk.

    Args:
        backbone: A :class:`kgzsl.vision.backbones.Backbone`.
        split: ``test`` or ``train``.
        indices: Optional subset of image indices (e.g. :func:`stratified_subset`).
        cache_dir: Cache folder; default ``$KGZSL_CACHE/features`` or ``~/.cache/kgzsl/features``.
        batch_size: Images per backbone call.
        progress: Show a progress bar.

    Returns:
        ``(features [N, D], labels [N])``.
    """
    from kgzsl.vision.extract import default_cache_dir

    images, labels = load_fmnist(split)
    if indices is None:
        indices = np.arange(len(labels))
    digest = hashlib.sha1(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:10]
    subset = "all" if len(indices) == len(labels) else f"{len(indices)}-{digest}"
    cache = Path(cache_dir or default_cache_dir()) / _cache_name(split, subset, backbone)
    if cache.is_file():
        try:
            cached = load_tensors(cache)
        except (OSError, ValueError) as exc:  # a corrupt or foreign file is rebuilt, never trusted
            logger.warning("ignoring feature cache %s (%s)", cache, exc)
            cached = None
        if cached is not None and cached["features"].size(0) == len(indices):
            return cached["features"], cached["labels"]
    chunks = []
    bar = tqdm(range(0, len(indices), batch_size), desc=f"fmnist {split} features",
               disable=None if progress else True)  # None: no bar off a terminal
    with torch.inference_mode():
        for start in bar:
            batch = torch.stack([backbone.transform(Image.fromarray(images[i]).convert("RGB"))
                                 for i in indices[start:start + batch_size]])
            chunks.append(backbone(batch).float().cpu())
    feats = torch.cat(chunks)
    out_labels = torch.from_numpy(labels[indices].astype(np.int64))
    try:
        save_tensors(cache, {"features": feats, "labels": out_labels})
    except OSError as exc:
        logger.warning("cannot write feature cache %s (%s)", cache, exc)
    return feats, out_labels
