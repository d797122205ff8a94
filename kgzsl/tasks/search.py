"""Text → image search: rank a folder's images by a concept's predicted classifier row.

:func:`build_index` stores the backbone's pooled features of every image under a folder in one
safetensors file, keyed by each file's path, size and modification time; building again processes
only new or changed files, and under ``torchrun`` splits them across the ranks (rank 0 writes the
index). :func:`search` scores the indexed features against the row of any node of the run's graph
or any concept added with :meth:`ZeroShotClassifier.add_concept`.

Example:
    >>> build_index(clf.backbone, "photos/", "photos.index")
    >>> search(clf, "photos.index", "red fox", top_k=3)
    [{'path': 'photos/fox.jpg', 'score': 7.91}, ...]
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError, NotFoundError, OutputError, SetupError
from kgzsl.utils.distributed import DistContext, all_ranks_agree, broadcast_object, gather_tensors, shard_indices
from kgzsl.utils.io import TensorFileError, check_output_file, load_tensors, read_tensor_metadata, save_tensors

__all__ = ["build_index", "search", "check_index_path", "SearchIndexError"]

logger = logging.getLogger(__name__)

_MAX_HEADER = 100_000_000  # safetensors refuses longer headers


class SearchIndexError(InputError):
    """An index file is missing, corrupt, or was built with another backbone."""


class _DamagedIndexError(SearchIndexError):
    """A file that was written as a kgzsl image index but can no longer be read as one."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} is a damaged kgzsl image index: {problem}; build it again with "
                         f"`kgzsl index RUN DIR --out {path}`")
        self.problem = problem


def _is_index_file(path: Path) -> bool:
    """Whether ``path`` holds a kgzsl image index, whole or damaged.

    An index is a safetensors file whose header names a ``features`` tensor and a ``files`` list
    (no other kgzsl file has both). Only the header is read, so an index whose data is truncated
    or corrupt still counts; a header cut short counts if what is left of it starts as an index's.
    """
    try:
        with open(path, "rb") as fh:
            size = fh.read(8)
            length = int.from_bytes(size, "little")
            if len(size) < 8 or not 2 <= length <= _MAX_HEADER:
                return False
            head = fh.read(length)
    except OSError:
        return False
    try:
        header = json.loads(head)
    except (ValueError, RecursionError):  # cut short (or bytes changed): the metadata comes first in the header
        return head.startswith(b'{"__metadata__":{"') and (b'"files":' in head or b'"backbone":' in head)
    return isinstance(header, dict) and "features" in header and isinstance(header.get("__metadata__"), dict) \
        and "files" in header["__metadata__"]


def check_index_path(index_path: str | os.PathLike) -> Path:
    """``index_path`` as a Path, after checking that :func:`build_index` may write it: call it before any work.

    The file may be missing, empty, or a kgzsl image index (damaged ones included: they are built
    again); any other file is left alone.

    Raises:
        kgzsl.errors.OutputError: If ``index_path`` is a folder, cannot be written, or is a file
            that is not a kgzsl image index (a photo, notes: never overwritten).
    """
    path = check_output_file(index_path, "--out", example="photos.index")
    if path.is_file() and path.stat().st_size > 0 and not _is_index_file(path):
        problem = f"{path} exists and is not a kgzsl image index, so it is not overwritten"
        raise OutputError(f"{problem}; choose another index_path, or delete the file",
                          cli_message=f"--out {problem}; choose another path, or delete the file")
    return path


def _read_index(path: Path) -> tuple[list[dict[str, Any]], torch.Tensor, dict[str, str]]:
    """The files, features and metadata of the index ``path``.

    Raises:
        SearchIndexError: If ``path`` is not a kgzsl image index, or is a damaged one
            (``_DamagedIndexError``, whose ``problem`` says what is wrong).
    """
    if not _is_index_file(path):
        raise SearchIndexError(f"{path} is not a kgzsl image index (`kgzsl index` writes those); give an index "
                               "file, or build one with `kgzsl index RUN DIR --out photos.index`")
    try:
        meta = read_tensor_metadata(path)
        files = json.loads(meta["files"])
        feats = load_tensors(path)["features"]
    except TensorFileError:
        raise _DamagedIndexError(path, "its data is truncated or corrupt") from None
    except (KeyError, ValueError) as exc:
        raise _DamagedIndexError(path, f"its list of files cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(files, list) or not all(isinstance(f, dict) and {"path", "size", "mtime_ns"} <= f.keys()
                                              for f in files):
        raise _DamagedIndexError(path, "its list of files is not a list of {path, size, mtime_ns}")
    if feats.ndim != 2 or feats.size(0) != len(files):
        raise _DamagedIndexError(path, f"it lists {len(files)} files but holds {tuple(feats.shape)} features")
    return files, feats, meta


def _file_keys(entry: dict[str, Any]) -> list[tuple]:
    """The keys an indexed file's features are reused by: its absolute path, size and modification
    time, and (indexes of this version) its path under the indexed folder with the same, so that a
    folder moved or mounted elsewhere is not read again."""
    keys = [(entry["path"], entry["size"], entry["mtime_ns"])]
    if "relative" in entry:
        keys.append(("relative", entry["relative"], entry["size"], entry["mtime_ns"]))
    return keys


def _old_row(old: dict[tuple, torch.Tensor], entry: dict[str, Any]) -> torch.Tensor | None:
    """The features ``old`` holds for a listed file, by any of its keys (None: new or changed)."""
    return next((old[k] for k in _file_keys(entry) if k in old), None)


def _reusable_rows(backbone: Any, index_path: Path) -> tuple[dict[tuple, torch.Tensor], list[dict[str, Any]]]:
    """Features of the files an existing index already holds, keyed by :func:`_file_keys`, and its list
    of files (none: no index there, or one of another backbone)."""
    if not index_path.is_file() or index_path.stat().st_size == 0:
        return {}, []
    try:
        prev, feats, meta = _read_index(index_path)
    except _DamagedIndexError as exc:  # anything that is no index at all was refused before (check_index_path)
        logger.warning("%s is a damaged kgzsl image index (%s): building it again from every image",
                       index_path, exc.problem)
        return {}, []
    from kgzsl.vision.backbones import same_weights

    if meta.get("backbone") != backbone.name or not same_weights(meta.get("weights", ""),
                                                                  str(getattr(backbone, "weights", ""))):
        logger.info("index %s was built with another backbone: rebuilding it", index_path)
        return {}, []
    return {key: feats[i] for i, f in enumerate(prev) for key in _file_keys(f)}, prev


def build_index(backbone: Any, folder: str | os.PathLike, index_path: str | os.PathLike,
                progress: bool = True, batch_size: int = 32, num_workers: int = 0, amp: str | bool = "auto",
                dist_ctx: DistContext | None = None) -> dict[str, int]:
    """Index the images under ``folder`` (recursively), reusing the rows of unchanged files.

    Under torchrun every rank must call it with the same arguments: rank 0 reads the old index,
    the new or changed files are split across the ranks, each rank extracts its share (and caches
    it in the feature cache, so a rerun after a failed rank redoes only what is missing), and the
    features are gathered to rank 0, which alone writes the index.

    In one process, an interruption (Ctrl-C, or SIGTERM under the ``kgzsl`` command) writes the
    index of the images done so far (every finished part of 256) before it propagates, so the same
    call again goes on where it stopped. A file reached twice (through a symbolic link) is indexed
    once, under the first path it is listed by; a symbolic link keeps its own path.

    Args:
        backbone: The run's frozen backbone.
        folder: Image folder.
        index_path: The index file (safetensors, written atomically).
        progress: Progress bar over the files processed (rank 0 only).
        batch_size: Images per forward pass.
        num_workers: DataLoader processes decoding images, per process.
        amp: Mixed precision of the backbone (:func:`kgzsl.vision.extract.autocast_dtype`):
            ``"auto"`` uses it on CUDA only.
        dist_ctx: The torchrun job (:func:`kgzsl.utils.distributed.init_distributed`); None: one process.

    Returns:
        Counts, the same on every rank: ``{"images", "new", "reused", "removed", "failed"}``;
        ``failed`` counts the files that could not be read (a broken symbolic link, an image that
        does not decode), each logged as a warning naming it.

    Raises:
        FileNotFoundError: If ``folder`` does not exist.
        kgzsl.errors.InputError: If it holds no image file (nothing is written).
        kgzsl.errors.OutputError: If ``index_path`` is a folder, cannot be written, or is a file that
            is not a kgzsl image index (see :func:`check_index_path`); checked before any work.
    """
    from kgzsl.vision.folders import IMAGE_EXTENSIONS, list_images

    ctx = dist_ctx or DistContext()
    index_path = check_index_path(index_path)
    files, keys, unlisted, seen = [], [], 0, set()
    listed = list_images(folder)
    if not listed:
        raise InputError(f"{folder} is a folder without image files (looked for "
                         f"{', '.join(sorted(IMAGE_EXTENSIONS))} in any case, in sub-folders too); index a folder "
                         "that holds images")
    for p in listed:
        try:
            st = p.stat()
        except OSError as exc:  # a broken symbolic link, or no permission: one file, not the whole index
            unlisted += 1
            if ctx.is_main:
                logger.warning("skipping image: %s", _cannot_stat(p, exc))
            continue
        resolved = str(p.resolve())
        if resolved in seen:  # a symbolic link to a file listed already: the index holds a file once
            logger.debug("listed already (a symbolic link to it): %s", p)
            continue
        seen.add(resolved)
        files.append(p)
        # the path as listed under the folder (a symbolic link keeps its own name), made absolute
        keys.append({"path": str(p.absolute()), "relative": p.relative_to(Path(folder)).as_posix(), "size": st.st_size,
                     "mtime_ns": st.st_mtime_ns})
    if not all_ranks_agree(keys, ctx):
        raise SetupError(f"the processes listed different files under {folder} (did it change?); run again")
    old, before = _reusable_rows(backbone, index_path) if ctx.is_main else ({}, [])
    todo = [i for i, k in enumerate(keys) if _old_row(old, k) is None]
    todo = broadcast_object(todo, ctx)  # rank 0 read the index: the others take its list
    share = [[todo[j] for j in shard_indices(len(todo), DistContext(rank=r, world_size=ctx.world_size))]
             for r in range(ctx.world_size)]
    dim = int(backbone.feature_dim)
    mine = share[ctx.rank]
    got = {"features": torch.zeros(len(mine), dim), "ok": torch.zeros(len(mine), dtype=torch.bool), "done": 0}
    try:
        _extract_in_parts(backbone, [files[i] for i in mine], got, batch_size=batch_size,
                          num_workers=num_workers, progress=progress and ctx.is_main, cache=ctx.distributed, amp=amp)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM under the kgzsl command: keep the parts done
        if not ctx.distributed and got["done"]:
            done = got["done"]
            kept = _write_index(index_path, backbone, keys, old, todo[:done], got["features"][:done], got["ok"][:done])
            logger.warning("index %s: interrupted; it keeps %d images (%d of the %d new ones); run the same command "
                           "again to index the rest", index_path, kept, int(got["ok"][:done].sum()), len(todo))
        raise
    shares, oks = gather_tensors(got["features"], ctx), gather_tensors(got["ok"], ctx)
    stats = None
    if ctx.is_main:
        rows = [i for part in share for i in part]
        feats = torch.cat(shares) if shares else torch.zeros(0, dim)
        ok = torch.cat(oks) if oks else torch.zeros(0, dtype=torch.bool)
        kept = _write_index(index_path, backbone, keys, old, rows, feats, ok)
        paths, relatives = {k["path"] for k in keys}, {k["relative"] for k in keys}
        removed = [e for e in before if e["path"] not in paths and e.get("relative") not in relatives]  # moved: kept
        stats = {"images": kept, "new": int(ok.sum()), "reused": len(keys) - len(todo),
                 "removed": len(removed), "failed": int((~ok).sum()) + unlisted}
        logger.info("index %s: %s", index_path, stats)
    return broadcast_object(stats, ctx)


_PART = 256  # images extracted between two points where an interrupted build_index can keep its work


def _extract_in_parts(backbone: Any, paths: list[Path], got: dict[str, Any], **extract: Any) -> None:
    """Features of ``paths`` into ``got["features"]`` and ``got["ok"]``, in parts of :data:`_PART` images.

    ``got["done"]`` counts the images of the finished parts, so that a caller interrupted in the
    middle still has those (one DataLoader and one progress bar run over every part).
    """
    from kgzsl.vision.extract import iter_features

    if not paths:  # nothing new: no progress bar either
        return
    parts = [paths[s:s + _PART] for s in range(0, len(paths), _PART)]
    for g, feats, ok in iter_features(backbone, parts, **extract):
        start = g * _PART
        got["features"][start:start + len(ok)] = feats
        got["ok"][start:start + len(ok)] = ok
        got["done"] = start + len(ok)


def _write_index(index_path: Path, backbone: Any, keys: list[dict[str, Any]], old: dict[tuple, torch.Tensor],
                 rows: list[int], feats: torch.Tensor, ok: torch.Tensor) -> int:
    """Write the index of the listed files ``keys`` that have features: reused from ``old``, or new.

    ``rows`` are the positions in ``keys`` of the new features ``feats`` (``ok`` False: unreadable,
    left out). Returns the number of files indexed.
    """
    new = {i: f for i, f, good in zip(rows, feats, ok.tolist()) if good}
    kept, out = [], []
    for i, k in enumerate(keys):
        row = _old_row(old, k)
        row = new.get(i) if row is None else row
        if row is not None:
            kept.append(k)
            out.append(row)
    save_tensors(index_path, {"features": torch.stack(out) if out else torch.zeros(0, int(backbone.feature_dim))},
                 metadata={"files": json.dumps(kept), "backbone": backbone.name,
                           "weights": str(getattr(backbone, "weights", ""))})
    return len(kept)


def _cannot_stat(path: Path, exc: OSError) -> str:
    """Why the listed file ``path`` cannot be read, for the warning that skips it."""
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        return (f"{path} is a broken symbolic link: its target {os.readlink(path)} does not exist; remove the "
                "link or make it point to an image")
    return f"cannot read {path}: {exc.strerror or exc}"


def search(clf: Any, index_path: str | os.PathLike, query: str, top_k: int = 5) -> list[dict[str, Any]]:
    """Rank the indexed images by the logit of ``query``'s predicted row.

    The scores are logits, as :meth:`~kgzsl.inference.classifier.ZeroShotClassifier.logits` gives
    them: they order the images for one query, but do not compare across queries, and the best
    images come back whether or not the index holds any image of the query at all.

    Args:
        clf: A loaded :class:`~kgzsl.inference.classifier.ZeroShotClassifier` (its backbone built the index).
        index_path: File written by :func:`build_index`.
        query: A word, synset name or wnid of a graph node or an added concept (a WordNet noun that
            is not a node is added first, as ``predict`` adds it).
        top_k: How many images to return (>= 1).

    Returns:
        ``[{"path", "score", "synset", "wnid"}]``, best first; the score is the query's logit for that
        image, ``synset`` / ``wnid`` the sense it was scored by (for a word with senses a photo picks
        between, ``"crane"``, the one that image fits best).

    Raises:
        kgzsl.errors.InputError: If ``top_k`` is below 1.
        kgzsl.inference.labels.LabelError: If the query is not a node (add it first with ``clf.add_concept``).
        SearchIndexError: If the index is corrupt or comes from another backbone.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a whole number >= 1, got {top_k!r}")
    index_path = Path(index_path)
    if not index_path.is_file():
        raise NotFoundError(f"index not found: {index_path}; build it with `kgzsl index RUN DIR --out {index_path}`")
    files, feats, meta = _read_index(index_path)
    from kgzsl.vision.backbones import same_weights

    if meta.get("backbone") != clf.backbone.name:
        raise SearchIndexError(f"{index_path} was built with backbone {meta.get('backbone')!r}, the run uses "
                          f"{clf.backbone.name!r}; build the index with the run's backbone")
    if "weights" in meta and not same_weights(meta["weights"], str(getattr(clf.backbone, "weights", ""))):
        raise SearchIndexError(f"{index_path} was built with other weights of {clf.backbone.name} ({meta['weights']}) "
                               f"than the run's ({clf.backbone.weights}); index the folder again with this run: "
                               f"`kgzsl index RUN DIR --out {index_path}`")
    if not files:
        return []
    resolved = clf.resolve_labels([query])[0]
    head = clf.candidate_head([query])
    features = feats.to(clf.rows.device)
    with torch.inference_mode():  # as clf.logits scores
        if hasattr(head, "choose"):  # senses a photo picks between: each image's own
            logits, choice = head.choose(features)
            senses = [head.senses[0][int(c)] for c in choice[:, 0].tolist()]
        else:
            logits, senses = head.logits(features), [resolved.index] * len(files)
    values, order = logits[:, 0].float().cpu().topk(min(top_k, len(files)))
    hits = [{"path": files[i]["path"], "score": round(float(v), 4), "synset": clf.names[senses[i]],
             "wnid": clf.wnids[senses[i]]} for v, i in zip(values.tolist(), order.tolist())]
    gone = [h["path"] for h in hits if not os.path.exists(h["path"])]
    if gone:  # the folder moved, or files were deleted, since it was indexed
        logger.warning("%d of the %d images found are no longer where %s says (e.g. %s): if the folder moved, "
                       "index it again where it is now (`kgzsl index RUN NEWDIR --out %s`; unchanged files are not "
                       "read again)", len(gone), len(hits), index_path, gone[0], index_path)
    return hits
