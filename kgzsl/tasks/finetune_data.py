"""Seen-class images for fine-tuning a backbone: class choice, a seeded split, augmentation, safe loading.

:mod:`kgzsl.tasks.finetune` trains on an ImageNet-style folder (``root/<wnid>/*.jpg``). This module
decides which class folders take part, splits each class's images into training and validation
with a seeded permutation, builds the training augmentation from the backbone's own evaluation
preprocessing, and makes the loaders (:class:`kgzsl.vision.folders.ImageFiles`: an unreadable
image is skipped rather than stopping the run).

Augmentation is seeded per image from ``(seed, epoch, index)``
(:func:`kgzsl.vision.folders.item_seed`), so a batch is the same whatever the number of DataLoader
workers or processes, and a resumed run repeats it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torchvision import transforms as T

from kgzsl.errors import InputError
from kgzsl.graph.wordnet import WNID_RE
from kgzsl.vision.folders import ImageFiles, collate_images, not_a_folder

__all__ = ["select_classes", "split_per_class", "train_transform", "make_loaders", "warn_unreadable"]

logger = logging.getLogger(__name__)

def select_classes(data_dir: str | os.PathLike, seen: Sequence[str], nodes: Sequence[str],
                   holdout: Sequence[str] = (), warn: bool = True) -> list[str]:
    """The class folders of ``data_dir`` to fine-tune on, in wnid order.

    A folder takes part if it is a seen class of the backbone, a node of the run (so it has a
    predicted row) and not held out from the run's training (its images would leak into the
    zero-shot evaluation of the held-out classes). The others are listed in one warning (if ``warn``).

    Raises:
        FileNotFoundError: If ``data_dir`` does not exist.
        InputError: If it is a file, not a folder.
        ValueError: If fewer than two classes remain.
    """
    root = Path(data_dir)
    if not root.is_dir():  # missing, or a file given instead (a split list)
        raise not_a_folder(root)
    seen_set, node_set, hidden = set(seen), set(nodes), set(holdout)
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    reasons = {name: ("not named by a wnid" if not WNID_RE.match(name) else
                      "held out from the run's training" if name in hidden else
                      "not a seen class of the backbone" if name not in seen_set else
                      "not a node of the run's graph" if name not in node_set else "")
               for name in folders}
    skipped = {name: why for name, why in reasons.items() if why}
    if skipped and warn:
        shown = ", ".join(f"{name} ({why})" for name, why in list(skipped.items())[:5])
        logger.warning("%d class folder(s) of %s are not fine-tuned on: %s%s", len(skipped), root, shown,
                       " ..." if len(skipped) > 5 else "")
    classes = [name for name in folders if not reasons[name]]
    if len(classes) < 2:
        raise InputError(f"{root} has {len(classes)} usable class folder(s); fine-tuning needs images of at least "
                         "two seen classes of the backbone that are nodes of the run, in folders named by wnid "
                         f"(like {root}/n02123045/*.jpg)")
    return classes


def split_per_class(items: Sequence[tuple[Path, str]], val_fraction: float,
                    seed: int) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Split ``(path, wnid)`` items into (train, validation), the same fraction of every class.

    Each class keeps at least one training image; ``round(n * val_fraction)`` of its ``n`` images
    (drawn by a permutation seeded with ``seed``) go to validation. Both lists keep the input order.
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}",
                         cli_message=f"--val-fraction must be in [0, 1), got {val_fraction}")
    by_class: dict[str, list[int]] = {}
    for i, (_, wnid) in enumerate(items):
        by_class.setdefault(wnid, []).append(i)
    gen = torch.Generator().manual_seed(seed)
    val: set[int] = set()
    for wnid in sorted(by_class):
        idx = by_class[wnid]
        k = min(len(idx) - 1, int(round(len(idx) * val_fraction)))
        val.update(idx[j] for j in torch.randperm(len(idx), generator=gen)[:k].tolist())
    return ([it for i, it in enumerate(items) if i not in val], [it for i, it in enumerate(items) if i in val])


def train_transform(eval_transform: Callable) -> T.Compose:
    """RandomResizedCrop + horizontal flip with the crop size, interpolation and normalisation of ``eval_transform``.

    Args:
        eval_transform: A backbone's evaluation preprocessing: a ``Compose`` of ``Resize``,
            ``CenterCrop``, ``ToTensor``, ``Normalize``, a :class:`kgzsl.vision.preprocess.EvalTransform`
            (Lite models) or torchvision's ``ImageClassification`` preset.

    Raises:
        ValueError: If the crop size or the normalisation cannot be read from it.
    """
    if isinstance(eval_transform, T.Compose):
        parts = eval_transform.transforms
        crop = next((t.size for t in parts if isinstance(t, T.CenterCrop)), None)
        norm = next((t for t in parts if isinstance(t, T.Normalize)), None)
        resize = next((t for t in parts if isinstance(t, T.Resize)), None)
        mean, std = (norm.mean, norm.std) if norm is not None else (None, None)
        interpolation = resize.interpolation if resize is not None else T.InterpolationMode.BILINEAR
    else:
        crop, mean, std = (getattr(eval_transform, a, None) for a in ("crop_size", "mean", "std"))
        interpolation = getattr(eval_transform, "interpolation", T.InterpolationMode.BILINEAR)
        if isinstance(interpolation, str):  # kgzsl.vision.preprocess.EvalTransform names it
            interpolation = T.InterpolationMode(interpolation)
    if crop is None or mean is None or std is None:
        raise InputError(f"cannot derive a training augmentation from the backbone's preprocessing {eval_transform!r}: "
                         "it needs a CenterCrop and a Normalize (or torchvision's ImageClassification preset)")
    size = tuple(crop) if isinstance(crop, (list, tuple)) else (int(crop), int(crop))
    size = size * 2 if len(size) == 1 else size
    return T.Compose([T.RandomResizedCrop(size, interpolation=interpolation, antialias=True),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def warn_unreadable(errors: list[tuple[int, str]], skipped: set[str]) -> None:
    """Log each error of :func:`~kgzsl.vision.folders.collate_images` once (``skipped``: the messages logged)."""
    for _, msg in errors:
        if msg not in skipped:
            skipped.add(msg)
            logger.warning("skipping image: %s", msg)


def make_loaders(train_items: Sequence[tuple[Path, str]], val_items: Sequence[tuple[Path, str]], classes: list[str],
                 eval_transform: Callable, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 workers: int | None = None, pin_memory: bool = False,
                 ) -> tuple[ImageFiles, DistributedSampler, DataLoader, DataLoader]:
    """This process's training and validation loaders.

    Training: augmented (:func:`train_transform`), shuffled per epoch by a ``DistributedSampler``
    (call ``set_epoch`` and set the dataset's ``epoch``); validation: ``eval_transform``, the
    process's strided share of the images, no padding.

    Args:
        batch_size: Images per batch of this process.
        workers: DataLoader processes; None: up to 4, one CPU core left to the training.

    Returns:
        ``(training dataset, its sampler, training loader, validation loader)``.
    """
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) // world_size - 1))
    index = {w: i for i, w in enumerate(classes)}
    train = ImageFiles([p for p, _ in train_items], train_transform(eval_transform),
                       labels=[index[w] for _, w in train_items], seed=seed)
    sampler = DistributedSampler(train, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    val = Subset(ImageFiles([p for p, _ in val_items], eval_transform, labels=[index[w] for _, w in val_items]),
                 range(rank, len(val_items), world_size))
    opts = {"num_workers": workers, "collate_fn": collate_images, "pin_memory": pin_memory}
    return (train, sampler, DataLoader(train, batch_size=batch_size, sampler=sampler, **opts),
            DataLoader(val, batch_size=batch_size, **opts))
