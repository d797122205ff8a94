"""Image features of a frozen backbone, extracted once and cached on disk.

Evaluating a run scores every image against every candidate class; the expensive part, the
backbone's forward pass, does not depend on the run. :func:`extract_features` therefore caches the
pooled features under ``cache_dir`` as safetensors, keyed by the backbone (name and weights) and by
each file's path, size and modification time, so a changed or replaced image is re-read.

Images are decoded by DataLoader workers (``num_workers``, see :func:`default_num_workers`) and,
on CUDA, the backbone runs under autocast (:func:`autocast_dtype`); the CPU stays float32, so its
features do not depend on the options. Under torchrun each rank calls :func:`extract_features` on
its own share of the files, which gives each share its own cache file.

Example:
    >>> items = kgzsl.vision.folders.image_folder("data/imagenet21k/val", wnids=["n02121620", "n02084071"])
    >>> feats, ok = extract_features(backbone, [p for p, _ in items])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from kgzsl.utils.io import load_tensors, save_tensors
from kgzsl.utils.signals import interruption_of
from kgzsl.vision.folders import ImageFiles, collate_images

__all__ = ["default_cache_dir", "cache_key", "autocast_dtype", "default_num_workers", "extract_features",
           "iter_features"]

logger = logging.getLogger(__name__)



def default_cache_dir() -> Path:
    """``$KGZSL_CACHE/features`` if ``KGZSL_CACHE`` is set, else ``~/.cache/kgzsl/features``."""
    root = os.environ.get("KGZSL_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "kgzsl") / "features"


def default_num_workers(processes: int = 1) -> int:
    """DataLoader workers per process that leave one core of each process's share for the model.

    ``min(4, cores // processes - 1)``, at least 0: the cores this process may use (its CPU
    affinity) split between the ``processes`` of a torchrun job on this machine.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores // max(1, processes) - 1))


def cache_key(backbone: Any, paths: Sequence[str | os.PathLike], precision: str = "float32") -> str:
    """Hash of the backbone's name and weights, the precision and each file's absolute path, size and mtime.

    Float32 features (the default) keep the key they always had, so existing caches stay valid;
    mixed-precision features (``precision="bfloat16"`` or ``"float16"``) get keys of their own.
    """
    files = []
    for p in paths:
        try:
            st = os.stat(p)
            files.append((os.path.abspath(p), st.st_size, st.st_mtime_ns))
        except OSError:
            files.append((os.path.abspath(p), -1, -1))
    head = [backbone.name, str(getattr(backbone, "weights", ""))] + ([] if precision == "float32" else [precision])
    blob = json.dumps([*head, files])
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_cache(path: Path, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        t = load_tensors(path)
        feats, ok = t["features"], t["ok"].bool()
        if feats.ndim == 2 and feats.size(0) == n and ok.shape == (n,):
            return feats.float(), ok
        logger.warning("feature cache %s does not match %d images; recomputing", path, n)
    except Exception as exc:  # a corrupt cache is recomputed, never fatal
        logger.warning("unreadable feature cache %s (%s); recomputing", path, exc)
    return None


def autocast_dtype(device: str | torch.device, amp: str | bool = "auto") -> torch.dtype | None:
    """The autocast dtype feature extraction uses on ``device``, or None for plain float32.

    Args:
        device: Where the backbone runs.
        amp: ``"auto"``: bfloat16 (float16 on GPUs without it) on CUDA, float32 elsewhere, so CPU
            results never change; True: also bfloat16 on the CPU; False: always float32.

    Raises:
        ValueError: If ``amp`` is none of ``"auto"``, True, False.
    """
    if amp not in ("auto", True, False):
        raise ValueError(f"amp must be 'auto', True or False, got {amp!r}")
    kind = torch.device(device).type
    if amp is False or (amp == "auto" and kind != "cuda"):
        return None
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if kind == "cpu" else None


def extract_features(backbone: Any, paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike | None = None,
                     batch_size: int = 32, progress: bool = True, num_workers: int = 0,
                     cache: bool = True, amp: str | bool = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled backbone features of image files, skipping unreadable ones, cached on disk.

    Args:
        backbone: A :class:`kgzsl.vision.backbones.Backbone` (or anything with ``name``, ``transform``,
            ``forward`` and optionally ``weights`` / ``device``).
        paths: Image files.
        cache_dir: Cache folder; default :func:`default_cache_dir`.
        batch_size: Images per forward pass.
        progress: Show a tqdm progress bar.
        num_workers: DataLoader worker processes decoding images (0: in this process); never more
            than there are batches.
        cache: Read and write the cache.
        amp: Mixed precision (see :func:`autocast_dtype`): by default autocast on CUDA only. Its
            features are cached apart from the float32 ones.

    Returns:
        ``(features [N, D] float32 on the CPU, ok [N] bool)``; rows of images that failed to load
        are zero with ``ok`` False (each failure is logged as a warning naming the file).
    """
    _, feats, ok = next(iter_features(backbone, [paths], cache_dir=cache_dir, batch_size=batch_size,
                                      progress=progress, num_workers=num_workers, cache=cache, amp=amp))
    return feats, ok


def iter_features(backbone: Any, groups: Sequence[Sequence[str | os.PathLike]],
                  cache_dir: str | os.PathLike | None = None, batch_size: int = 32, progress: bool = True,
                  num_workers: int = 0, cache: bool = True, amp: str | bool = "auto",
                  ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Features of several groups of images (e.g. one per class), each cached on its own, in order.

    One DataLoader streams the images of every group that is not cached yet, so its worker
    processes start once and batches run across group boundaries; a group is yielded (and its
    cache written) as soon as its last image is done. See :func:`extract_features` for the
    arguments.

    Yields:
        ``(group index, features [n, D], ok [n])`` for every group, in order.
    """
    from tqdm.auto import tqdm

    groups = [[str(p) for p in g] for g in groups]
    device = torch.device(getattr(backbone, "device", "cpu"))
    half = autocast_dtype(device, amp)
    precision = str(half or torch.float32).removeprefix("torch.")
    folder = Path(cache_dir or default_cache_dir())
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", backbone.name)
    files = [folder / f"{stem}-{cache_key(backbone, g, precision)[:32]}.safetensors" for g in groups]
    hits: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for g, paths in enumerate(groups):
        hit = _read_cache(files[g], len(paths)) if cache and paths and files[g].is_file() else None
        if hit is not None:
            logger.debug("features of %d images loaded from %s", len(paths), files[g])
            for j in (~hit[1]).nonzero().flatten().tolist():  # said when they were read, and again on every use
                logger.warning("skipping image: %s could not be read (unchanged since; its features are cached "
                               "as missing); fix or remove it", paths[j])
            hits[g] = hit
    flat = [(g, j) for g, paths in enumerate(groups) if g not in hits for j in range(len(paths))]
    dim = int(getattr(backbone, "feature_dim", 0))
    remaining = {g: len(p) for g, p in enumerate(groups) if g not in hits}
    parts: dict[int, list[torch.Tensor]] = {}  # buffers of the groups in flight only: memory stays bounded

    def part(g: int, width: int) -> list[torch.Tensor]:
        if g not in parts or parts[g][0].size(1) != width:  # first image, or no (or a wrong) feature_dim given
            parts[g] = [torch.zeros(len(groups[g]), width), torch.zeros(len(groups[g]), dtype=torch.bool)]
        return parts[g]

    batches = None
    if flat:
        workers = max(0, min(num_workers, -(-len(flat) // batch_size)))  # a worker per batch at most
        loader = DataLoader(ImageFiles([groups[g][j] for g, j in flat], backbone.transform), batch_size=batch_size,
                            num_workers=workers, collate_fn=collate_images, pin_memory=device.type == "cuda")
        batches = iter(loader)
    autocast = (lambda: torch.autocast(device.type, dtype=half)) if half is not None else contextlib.nullcontext
    # no bar when every group came from the cache
    # disable=None: no bar where stderr is no terminal (a log file)
    with tqdm(total=len(flat), unit="img", desc="features", disable=None if progress and flat else True) as bar:
        for g in range(len(groups)):
            if g in hits:
                yield g, *hits.pop(g)
                continue
            while remaining[g] > 0:
                try:
                    idx, batch, _, errors = next(batches)
                except RuntimeError as exc:  # workers killed by a SIGTERM sent to the process group
                    raise interruption_of(exc) or exc from None
                for i, msg in errors:
                    path = groups[flat[i][0]][flat[i][1]]
                    logger.warning("skipping image: %s", msg if path in msg else f"{path}: {msg}")
                    remaining[flat[i][0]] -= 1
                if batch is not None:
                    with torch.inference_mode(), autocast():  # not around the yields: the caller's mode stays its own
                        out = backbone(batch.to(device, non_blocking=True))
                    out = out.float().cpu()
                    for row, i in enumerate(idx):
                        feats, ok = part(flat[i][0], out.size(1))
                        feats[flat[i][1]] = out[row]
                        ok[flat[i][1]] = True
                        remaining[flat[i][0]] -= 1
                bar.update(len(idx) + len(errors))
            if g not in parts:  # an empty group, or every image of it unreadable
                part(g, dim)
            feats, ok = parts.pop(g)
            if cache and groups[g]:
                _write_cache(files[g], feats, ok, backbone, precision)
            yield g, feats, ok


def _write_cache(file: Path, feats: torch.Tensor, ok: torch.Tensor, backbone: Any, precision: str) -> None:
    try:
        save_tensors(file, {"features": feats, "ok": ok},
                     metadata={"backbone": backbone.name, "weights": str(getattr(backbone, "weights", "")),
                               "images": str(len(ok)), "precision": precision})
        logger.debug("features of %d images cached at %s", len(ok), file)
    except OSError as exc:  # a read-only or full disk costs the cache, not the features
        logger.warning("cannot write feature cache %s (%s); set KGZSL_CACHE to a writable folder", file, exc)
