"""Image files on disk: listing a folder, ImageNet-style class folders, and a forgiving Dataset.

:func:`list_images` is the one place that decides what counts as an image file: an extension of
:data:`IMAGE_EXTENSIONS` in any case, hidden files and folders left out, symbolic links followed,
sorted by path. :func:`image_folder` applies it to each ``root/<wnid>/`` class folder.
:class:`ImageFiles` loads and preprocesses one image per item; an unreadable image becomes an
error message (never an exception that stops a run) and :func:`collate_images` stacks the readable
ones and reports the others.

torchvision's ``make_dataset`` / ``IMG_EXTENSIONS`` are not used: they lack ``.gif``, cannot leave
hidden folders out, and importing ``torchvision.datasets`` costs as long as importing torch,
which feature extraction with the default backbone otherwise never pays.

Example:
    >>> items = image_folder("data/val", wnids=["n02121620"])     # [(path, wnid), ...]
    >>> ds = ImageFiles([p for p, _ in items], backbone.transform)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch.utils.data import Dataset

from kgzsl.errors import InputError, NotFoundError
from kgzsl.graph.wordnet import WNID_RE
from kgzsl.vision.images import ImageLoadError, load_image

__all__ = ["IMAGE_EXTENSIONS", "NoClassFoldersError", "not_a_folder", "list_images", "class_folders", "image_folder",
           "ImageFiles", "collate_images", "item_seed"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_MASK = (1 << 63) - 1

logger = logging.getLogger(__name__)


def not_a_folder(path: Path) -> InputError:
    """The error for an image folder argument that is not a folder: missing, or a file given instead."""
    if path.is_file():
        return InputError(f"{path} is a file, not a folder of images: give the folder that holds it "
                          f"({path.parent}), or put the images to use in a folder of their own")
    return NotFoundError(f"image folder not found: {path}")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file under ``folder``, recursively, sorted by path.

    An image file has an extension of :data:`IMAGE_EXTENSIONS` in any case (``.JPEG`` too);
    files and folders whose names start with ``.`` are left out; symbolic links are followed.

    Raises:
        FileNotFoundError: If ``folder`` does not exist.
        InputError: If it is a file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise not_a_folder(folder)
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(files)


def class_folders(root: str | os.PathLike) -> list[str]:
    """The names of ``root``'s sub-folders that hold image files (see :func:`list_images`), sorted;
    hidden ones left out. Empty when ``root`` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and list_images(d))


class NoClassFoldersError(InputError):
    """A folder without any class sub-folder named by wnid.

    Attributes:
        others: The names of the sub-folders it holds instead.
        hint: The part of the message that names them (empty when there are none).
    """

    def __init__(self, root: Path, others: list[str]) -> None:
        self.others = others
        listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        self.hint = f"; its sub-folders ({listed}) are not named by wnid" if others else ""
        super().__init__(f"{root} has no class sub-folders named by wnid (like {root}/n02121620/*.jpg){self.hint}")


def image_folder(root: str | os.PathLike, wnids: Iterable[str] | None = None) -> list[tuple[Path, str]]:
    """List the images of an ImageNet-style folder, ``root/<wnid>/**/<image>``.

    Without ``wnids``, a sub-folder whose name is not a wnid (``cats``) and a class folder without
    image files are skipped, each with a warning that names it and says why; hidden ones (``.git``)
    silently.

    Args:
        root: Folder with one sub-folder per class, named by wnid.
        wnids: Only keep these classes (sub-folders with other names are then allowed too, and
            skipped without a word).

    Returns:
        ``(path, wnid)`` pairs, sorted by class folder then path (see :func:`list_images`).

    Raises:
        FileNotFoundError: If ``root`` does not exist (an ``InputError`` if it is a file).
        NoClassFoldersError: A ``ValueError``, if ``root`` holds no class sub-folder (it names the
            folders it holds).
    """
    root = Path(root)
    if not root.is_dir():
        raise not_a_folder(root)
    keep = None if wnids is None else set(wnids)
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    is_class = [bool(WNID_RE.match(d.name) or (keep and d.name in keep)) for d in folders]
    classes = [d for d, c in zip(folders, is_class) if c]
    others = [d.name for d, c in zip(folders, is_class) if not c]
    if not classes:
        raise NoClassFoldersError(root, others)
    items = [(p, folder.name) for folder in classes if keep is None or folder.name in keep
             for p in list_images(folder)]
    if keep is None:
        for name in others:
            logger.warning("skipping the folder %s as a class: its name is not a WordNet id (like n02121620); rename "
                           "it to its class's wnid to use its images as that class", root / name)
        found = {w for _, w in items}
        for folder in classes:
            if folder.name not in found:
                logger.warning("skipping the class folder %s: no image files in it (looked for %s)", folder,
                               ", ".join(sorted(IMAGE_EXTENSIONS)))
    return items


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one image of one epoch (splitmix64 of the three numbers)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK


class ImageFiles(Dataset):
    """``(index, image tensor or None, label, error or None)`` per file; a bad image never raises.

    Args:
        paths: Image files.
        transform: PIL image to tensor.
        labels: One class index per file (default -1 for every file).
        seed: For a random ``transform`` (augmentation): image ``i`` of epoch :attr:`epoch` is
            transformed under :func:`item_seed` ``(seed, epoch, i)``, so a batch is the same
            whatever the number of DataLoader workers or processes (the global RNG is left as it
            was). None: ``transform`` runs as it is.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], transform: Callable, labels: Sequence[int] | None = None,
                 seed: int | None = None) -> None:
        self.paths = list(paths)
        self.labels = [-1] * len(self.paths) if labels is None else [int(y) for y in labels]
        if len(self.labels) != len(self.paths):
            raise ValueError(f"{len(self.labels)} labels for {len(self.paths)} images")
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, int, str | None]:
        path = self.paths[i]
        try:
            image = load_image(path)
            if self.seed is None:
                return i, self.transform(image), self.labels[i], None
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(item_seed(self.seed, self.epoch, i))
                return i, self.transform(image), self.labels[i], None
        except ImageLoadError as exc:
            return i, None, self.labels[i], str(exc)
        except Exception as exc:  # a transform failing on one odd image must not stop the run
            return i, None, self.labels[i], f"cannot preprocess image {path}: {type(exc).__name__}: {exc}"


def collate_images(batch: list[tuple[int, torch.Tensor | None, int, str | None]],
                   ) -> tuple[list[int], torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    """Stack the readable images of a batch of :class:`ImageFiles` items.

    Returns:
        ``(indices, images [B, 3, H, W] or None, labels [B], errors)``: the dataset indices,
        images and labels of the readable images, and ``(index, message)`` for the others. An
        image whose shape differs from the first readable one's is an error too.
    """
    good = [(i, x, y) for i, x, y, _ in batch if x is not None]
    errors = [(i, e or "unreadable") for i, x, _, e in batch if x is None]
    if good:
        shape = good[0][1].shape
        errors += [(i, f"transform gave shape {tuple(x.shape)}, expected {tuple(shape)}")
                   for i, x, _ in good if x.shape != shape]
        good = [(i, x, y) for i, x, y in good if x.shape == shape]
    images = torch.stack([x for _, x, _ in good]) if good else None
    return [i for i, _, _ in good], images, torch.tensor([y for _, _, y in good], dtype=torch.long), errors
