"""B5: real colour photos, each classified among its group's classes through ``predict``.

The data is any ImageNet-style folder named by wnid (``DIR/<wnid>/*.jpg``) with an optional
``groups.tsv`` (``wnid``, ``group``[, ...]; a header line is allowed): a photo's candidates are the
classes of its group (every class when there is no ``groups.tsv``). Scores come from the public
:meth:`~kgzsl.inference.classifier.ZeroShotClassifier.predict`, so the figure is what a user gets.
Classes that are not nodes of the run's graph are added first with
:meth:`~kgzsl.inference.classifier.ZeroShotClassifier.add_concept` (WordNet nouns need no parents).

Reported, as top-1 accuracy: ``predict``; ``hierarchy-max`` (a class scores the backbone's best
probability among its seen descendants-or-self, 0 without any: what the plain CNN can say); and
``chance`` (1 / the number of candidates), over all photos, the seen ones (classes of ImageNet-1k),
the unseen ones, each group, and the mean over classes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError, NotFoundError
from kgzsl.vision.folders import NoClassFoldersError, image_folder

__all__ = ["photo_items", "read_groups", "run_photos", "format_photos"]

logger = logging.getLogger(__name__)


def photo_items(data_dir: str | Path) -> list[tuple[Path, str]]:
    """The photos of ``data_dir/<wnid>/`` as ``(path, wnid)`` pairs (see :func:`~kgzsl.vision.folders.image_folder`).

    A sub-folder whose name is not a wnid (``cats``) and a class folder without image files are
    skipped, each with a warning that names it and says why; hidden ones (``.git``) silently.

    Raises:
        NotFoundError: If ``data_dir`` is not a folder.
        InputError: If no photo remains.
    """
    root = Path(data_dir)
    layout = f"{root}/<wnid>/*.jpg, one sub-folder per class named by its WordNet id (like {root}/n02121620/)"
    if not root.is_dir():
        raise NotFoundError(f"photo folder not found: {root}; give a folder of photos laid out as {layout}")
    try:
        items = image_folder(root)  # names each folder it skips
    except NoClassFoldersError as exc:
        raise InputError(f"no photos in {root}: expected {layout}{exc.hint}") from None
    if not items:
        raise InputError(f"no photos in {root}: expected {layout}")
    return items


def read_groups(root: Path, wnids: list[str]) -> dict[str, str]:
    """``wnid -> group`` from ``root/groups.tsv``, or every class in one group ``all``.

    Raises:
        InputError: If a line is malformed or a class folder has no group.
    """
    path = root / "groups.tsv"
    if not path.is_file():
        return {w: "all" for w in wnids}
    groups, column = {}, 1
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cols = line.strip().split("\t")
        if not line.strip():
            continue
        if n == 1 and cols[0] == "wnid":  # a header names the group column
            column = cols.index("group") if "group" in cols else 1
            continue
        if len(cols) <= column:
            raise InputError(f"{path}:{n}: expected 'wnid<TAB>group' (or a header naming a 'group' column), "
                             f"got {line!r}")
        groups[cols[0]] = cols[column]
    missing = [w for w in wnids if w not in groups]
    if missing:
        raise InputError(f"{path} gives no group for the class folders {', '.join(missing[:5])}; add a line for each")
    return groups


def run_photos(clf: Any, data_dir: str | Path, progress: bool = True,
               items: list[tuple[Path, str]] | None = None) -> dict[str, Any]:
    """Score every photo of ``data_dir`` among its group's classes.

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier`.
        data_dir: ``DIR/<wnid>/*`` photos, optional ``DIR/groups.tsv`` (other sub-folders are
            skipped with a warning, see :func:`photo_items`).
        progress: Show a progress bar.
        items: The photos, when :func:`photo_items` already listed them (to check the folder before
            the run is loaded); listed here when None.

    Returns:
        ``{"rows": [{"method", "subset", "top1", "n"}, ...], "added": [...], "images": N, "classes": K}``.

    Raises:
        NotFoundError: If ``data_dir`` is not a folder.
        InputError: If it holds no photo, none of them can be scored, or ``groups.tsv`` is malformed.
    """
    from tqdm import tqdm

    root = Path(data_dir)
    items = photo_items(root) if items is None else items
    wnids = sorted({w for _, w in items})
    groups = read_groups(root, wnids)
    known = set(clf.wnids)
    added = []
    for w in wnids:
        if w not in known:
            try:
                clf.add_concept(w)
                added.append(w)
            except InputError as exc:
                logger.warning("class %s is not a graph node and could not be added (%s): its photos are skipped",
                               w, exc)
    usable = set(clf.wnids)
    if usable.isdisjoint(wnids):
        raise InputError(f"none of the photos in {root} can be scored: their classes ({', '.join(wnids[:5])}"
                         f"{', ...' if len(wnids) > 5 else ''}) are not nodes of the run's graph and cannot be added "
                         "as concepts (the warnings say why); name the class folders by WordNet noun wnids")
    members: dict[str, list[str]] = defaultdict(list)
    for w in wnids:
        if w in usable:
            members[groups[w]].append(w)
    seen = set(clf.backbone.wnids)
    position = {w: i for i, w in enumerate(clf.wnids)}
    records = []
    by_group = defaultdict(list)
    for path, w in items:
        if w in usable:
            by_group[groups[w]].append((path, w))
    bar = tqdm(total=sum(len(v) for v in by_group.values()), desc="photos", disable=None if progress else True)
    for group, photos in sorted(by_group.items()):
        candidates = members[group]
        preds = clf.predict([p for p, _ in photos], candidate_labels=candidates, top_k=1)
        hier = _hierarchy_max(clf, [p for p, _ in photos], candidates, position)
        for (path, w), pred, h in zip(photos, preds, hier):
            records.append({"wnid": w, "group": group, "seen": w in seen, "candidates": len(candidates),
                            "predict": bool(pred) and pred[0]["wnid"] == w, "hierarchy-max": h == w})
        bar.update(len(photos))
    bar.close()
    rows = []
    subsets = [("all", lambda r: True), ("seen", lambda r: r["seen"]), ("unseen", lambda r: not r["seen"])] + \
        [(f"group:{g}", (lambda g: lambda r: r["group"] == g)(g)) for g in sorted(by_group)]
    for name, keep in subsets:
        chosen = [r for r in records if keep(r)]
        if not chosen:
            continue
        for method in ("predict", "hierarchy-max"):
            rows.append({"method": method, "subset": name, "top1": _mean(r[method] for r in chosen), "n": len(chosen)})
        rows.append({"method": "chance", "subset": name, "top1": _mean(1 / r["candidates"] for r in chosen),
                     "n": len(chosen)})
    per_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        per_class[r["wnid"]].append(r)
    for method in ("predict", "hierarchy-max"):
        rows.append({"method": method, "subset": "mean-per-class",
                     "top1": _mean(_mean(r[method] for r in rs) for rs in per_class.values()), "n": len(per_class)})
    return {"rows": rows, "added": added, "images": len(records), "classes": len(per_class),
            "skipped_classes": sorted(set(wnids) - usable)}


def _hierarchy_max(clf: Any, photos: list[Path], candidates: list[str], position: dict[str, int]) -> list[str | None]:
    """Per photo, the candidate whose seen descendants-or-self get the backbone's highest probability."""
    from kgzsl.vision.images import load_batch

    ancestors = clf.seen_ancestors()
    seen_nodes = clf.seen_nodes()
    cand_nodes = {position[w]: w for w in candidates}
    owners: list[list[str]] = []  # per backbone class, the candidates it belongs to
    for j in seen_nodes.tolist():
        ups = ancestors.get(j, {}) if j >= 0 else {}
        owners.append([cand_nodes[a] for a in sorted(ups, key=ups.get) if a in cand_nodes])  # nearest first
    batch, ok, _ = load_batch(photos, clf.backbone.transform, max_pixels=clf.max_pixels)
    out: list[str | None] = [None] * len(photos)
    if batch is None:
        return out
    with torch.inference_mode():
        probs = clf.backbone.logits(batch).softmax(-1)
    for row, i in enumerate(ok):
        best, best_p = None, -1.0
        for k in probs[row].argsort(descending=True).tolist():
            if owners[k]:
                best, best_p = owners[k][0], float(probs[row, k])
                break
        out[i] = best if best_p > 0 else None
    return out


def _mean(values: Any) -> float:
    values = list(values)
    return round(float(sum(values)) / len(values), 4) if values else float("nan")


def format_photos(result: dict[str, Any]) -> str:
    """The result as a text table: one line per subset, one column per method."""
    subsets = list(dict.fromkeys(r["subset"] for r in result["rows"]))
    table = {(r["method"], r["subset"]): r for r in result["rows"]}
    lines = [f"{'subset':<24} {'n':>5} {'predict':>9} {'hierarchy-max':>14} {'chance':>8}"]
    for s in subsets:
        n = table.get(("predict", s), {}).get("n", "")
        cells = [f"{table[(m, s)]['top1']:.3f}" if (m, s) in table else "" for m in ("predict", "hierarchy-max", "chance")]
        lines.append(f"{s:<24} {n:>5} {cells[0]:>9} {cells[1]:>14} {cells[2]:>8}")
    return "\n".join(lines)
