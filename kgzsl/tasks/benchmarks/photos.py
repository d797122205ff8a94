"""B5, and your own labelled photos: each photo classified among its group's classes through ``predict``.

The data is an image folder with one sub-folder per class (``DIR/<class>/*.jpg``), named by a
label :meth:`~kgzsl.inference.classifier.ZeroShotClassifier.predict` takes (``hammer``,
``golden_retriever``, ``crane.n.04``, a class of one's own) or by its wnid (``n02121620``), with an
optional ``groups.tsv`` (``class``, ``group``[, ...]; a header line is allowed): a photo's
candidates are the classes of its group (every class when there is no ``groups.tsv``). Scores come
from the public :meth:`~kgzsl.inference.classifier.ZeroShotClassifier.predict`, so the figure is
what a user gets. A folder named by a word resolves as that label does in ``predict`` (a WordNet
noun that is not a node of the run's graph is added on first use); a wnid that is not a node is
added with :meth:`~kgzsl.inference.classifier.ZeroShotClassifier.add_concept` (WordNet nouns need
no parents). A photo is right when ``predict``'s first label is its folder's.

Reported, as top-1 accuracy: ``predict``; ``hierarchy-max`` (a class scores the backbone's best
probability among its seen descendants-or-self, 0 without any: what the plain CNN can say); and
``chance`` (1 / the number of candidates), over all photos, the seen ones (classes of ImageNet-1k),
the unseen ones, each group, and the mean over classes; then the most frequent mistakes.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError, NotFoundError
from kgzsl.graph.wordnet import WNID_RE, gloss as wordnet_gloss
from kgzsl.vision.folders import IMAGE_EXTENSIONS, image_folder

__all__ = ["photo_items", "read_groups", "run_photos", "format_photos"]

logger = logging.getLogger(__name__)

MISTAKES_SHOWN = 10
"""Most frequent mistakes the result lists."""
_CHUNK = 32  # photos per predict call
SENSES_SHOWN = 20
"""Class folders named by an ambiguous word whose sense the report shows (all are in the JSON)."""


def photo_items(data_dir: str | Path) -> list[tuple[Path, str]]:
    """The photos of ``data_dir/<class>/`` as ``(path, class folder name)`` pairs (see
    :func:`~kgzsl.vision.folders.image_folder`).

    A class folder without image files is skipped with a warning that names it; hidden ones
    (``.git``) silently.

    Raises:
        NotFoundError: If ``data_dir`` is not a folder.
        InputError: If no photo remains.
    """
    root = Path(data_dir)
    layout = (f"{root}/<class>/*.jpg, one sub-folder per class, named by a label as predict takes it "
              f"(like {root}/golden_retriever/) or by its WordNet id (like {root}/n02121620/)")
    if not root.is_dir():
        raise NotFoundError(f"photo folder not found: {root}; give a folder of photos laid out as {layout}")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = image_folder(root, wnids=folders) if folders else []
    for name in sorted(set(folders) - {c for _, c in items}):
        logger.warning("skipping the class folder %s: no image files in it", root / name)
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        logger.warning("ignoring %d image file(s) directly in %s (%s): a photo counts in the class folder it is in",
                       len(loose), root, ", ".join(sorted(loose)[:3]) + (", ..." if len(loose) > 3 else ""))
    if not items:
        raise InputError(f"no photos in {root}: expected {layout}")
    return items


def read_groups(root: Path, classes: list[str]) -> dict[str, str]:
    """``class folder -> group`` from ``root/groups.tsv``, or every class in one group ``all``.

    A line's class is matched to a folder by name, case, spaces and underscores aside (``light_bulb``
    is the folder ``light bulb``); a line that names no folder is ignored with a warning.

    Raises:
        InputError: If a line is malformed or a class folder has no group.
    """
    from kgzsl.graph.taxonomy import label_key

    path = root / "groups.tsv"
    if not path.is_file():
        return {c: "all" for c in classes}
    folder = {label_key(c): c for c in classes}
    groups, column, unknown = {}, 1, []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        cols = line.strip().split("\t")
        if not line.strip():
            continue
        if n == 1 and cols[0] in ("wnid", "class", "folder", "label"):  # a header names the group column
            column = cols.index("group") if "group" in cols else 1
            continue
        if len(cols) <= column:
            raise InputError(f"{path}:{n}: expected 'class<TAB>group' (the class folder's name, then its group; "
                             f"or a header naming a 'group' column), got {line!r}")
        name = cols[0] if cols[0] in classes else folder.get(label_key(cols[0]))
        if name is None:
            unknown.append(f"{n}: {cols[0]!r}")
        else:
            groups[name] = cols[column]
    if unknown:
        logger.warning("%s names no class folder of %s on line(s) %s: ignored", path, root,
                       "; ".join(unknown[:5]) + ("; ..." if len(unknown) > 5 else ""))
    missing = [c for c in classes if c not in groups]
    if missing:
        raise InputError(f"{path} gives no group for the class folders {', '.join(missing[:5])}; add a line for each")
    return groups


@dataclass(frozen=True)
class _Class:
    """A class folder and the graph node its name resolved to."""

    index: int
    wnid: str
    synset: str
    ambiguous: bool = False  # named by a word with other noun senses in WordNet
    also: tuple[str, ...] = ()  # other senses scored for it: each photo counts the one it fits best


def _resolve_classes(clf: Any, root: Path, names: list[str]) -> tuple[dict[str, _Class], list[str], dict[str, str]]:
    """``(folder name -> node, wnids added as concepts, folder name -> why it names no class)``; a folder
    that names no class is left out with a warning that says why."""
    known = set(clf.wnids)
    words = [n for n in names if not WNID_RE.fullmatch(n)]
    missing = [n for n in names if WNID_RE.fullmatch(n) and n not in known]
    for first in (lambda: clf.add_concepts(missing) if missing else None,  # one propagation for all of them
                  lambda: clf.resolve_labels(words) if words else None):
        try:
            first()
        except InputError:  # one of them is the trouble: the folders are taken one by one below, each says why
            pass
    classes, skipped = {}, {}
    for name in names:
        try:
            if WNID_RE.fullmatch(name):
                if name not in clf.wnids:
                    clf.add_concept(name)
                index = clf.wnids.index(name)
                classes[name] = _Class(index, name, clf.names[index])
            else:
                found = clf.resolve_labels([name])[0]  # as predict resolves it: may add a WordNet noun
                classes[name] = _Class(found.index, found.wnid, found.synset, _senses(name) > 1,
                                       tuple(clf.names[i] for i in found.senses))
        except InputError as exc:
            logger.warning("class folder %s names no class of the run (%s): its photos are skipped", root / name, exc)
            skipped[name] = f"names no class of the run: {exc.cli_text()}"
    added = list(dict.fromkeys(c.wnid for c in classes.values() if c.wnid not in known))
    return classes, added, skipped


def _in_groups(clf: Any, classes: dict[str, _Class], groups: dict[str, str]) -> dict[str, _Class]:
    """The classes as ``predict`` reads them among their group's classes: an ambiguous word takes the
    kind of sense the group's other labels are ("bass" among fish is the fish)."""
    out = dict(classes)
    for group in sorted({groups[name] for name in classes}):
        names = [name for name in classes if groups[name] == group]
        try:
            found = clf.resolve_labels(names)
        except InputError:  # two folders naming one class: the scoring says so
            continue
        for name, res in zip(names, found):
            if res.index != classes[name].index:
                out[name] = replace(classes[name], index=res.index, wnid=res.wnid, synset=res.synset,
                                    also=tuple(clf.names[i] for i in res.senses))
    return out


def _senses(word: str) -> int:
    """How many noun senses WordNet gives ``word`` (0 without WordNet, or for a class of one's own)."""
    from kgzsl.graph.wordnet import load_wordnet

    try:
        return len(load_wordnet().synsets(word.strip().replace(" ", "_"), "n"))
    except Exception:  # no WordNet here: the label resolved through the nodes' lemma names
        return 0


def run_photos(clf: Any, data_dir: str | Path, progress: bool = True,
               items: list[tuple[Path, str]] | None = None) -> dict[str, Any]:
    """Score every photo of ``data_dir`` among its group's classes.

    Classes added to score the photos (WordNet nouns that are not nodes) are added in memory only:
    the run folder is left as it was.

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier`.
        data_dir: ``DIR/<class>/*`` photos, optional ``DIR/groups.tsv`` (see :func:`photo_items`).
        progress: Show a progress bar.
        items: The photos, when :func:`photo_items` already listed them (to check the folder before
            the run is loaded); listed here when None.

    Returns:
        ``{"rows": [{"method", "subset", "top1", "n"}, ...], "images": N, "classes": K,
        "per_class": [{"class", "synset", "n", "predict", "hierarchy-max"}, ...],
        "photos": [{"image", "class", "predicted", "right"}, ...],
        "mistakes": [{"class", "predicted", "n", "of"}, ...],
        "resolved": [{"class", "wnid", "synset", "seen", "ambiguous", "also"}, ...],
        "added": [wnid, ...], "skipped": [{"class", "reason"}, ...], "skipped_classes": [...],
        "unreadable": [{"image", "error"}, ...], "score_calibration": where the run was calibrated
        (``kgzsl calibrate``) or None}``. Group rows (``group:<name>``) come only with more than one group.

    Raises:
        NotFoundError: If ``data_dir`` is not a folder.
        InputError: If it holds no photo, none of them can be scored, two folders of a group name
            the same class, or ``groups.tsv`` is malformed.
    """
    root = Path(data_dir)
    items = photo_items(root) if items is None else items
    names = sorted({c for _, c in items})
    groups = read_groups(root, names)
    store = clf.store_added_labels
    clf.store_added_labels = False  # a benchmark leaves the run as it was
    try:
        classes, added, skipped = _resolve_classes(clf, root, names)
        if not classes:
            raise InputError(f"none of the photos in {root} can be scored: their classes ({', '.join(names[:5])}"
                             f"{', ...' if len(names) > 5 else ''}) name no class of the run's graph and cannot be "
                             "added as concepts (the warnings say why); name the class folders by labels predict "
                             "takes, or by WordNet noun wnids")
        classes = _in_groups(clf, classes, groups)
        records, unreadable = _score(clf, root, items, classes, groups, progress)
    finally:
        clf.store_added_labels = store
    empty = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in names)
    skipped.update({name: "no image files in it" for name in empty})
    seen = set(clf.backbone.wnids)
    per_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        per_class[r["class"]].append(r)
    several = len({r["group"] for r in records}) > 1
    subsets = [("all", lambda r: True), ("seen", lambda r: r["seen"]), ("unseen", lambda r: not r["seen"])] + \
        [(f"group:{g}", (lambda g: lambda r: r["group"] == g)(g)) for g in sorted({r["group"] for r in records})
         if several]
    rows = []
    for name, keep in subsets:
        chosen = [r for r in records if keep(r)]
        if not chosen:
            continue
        for method in ("predict", "hierarchy-max"):
            rows.append({"method": method, "subset": name, "top1": _mean(r[method] for r in chosen), "n": len(chosen)})
        rows.append({"method": "chance", "subset": name, "top1": _mean(1 / r["candidates"] for r in chosen),
                     "n": len(chosen)})
    for method in ("predict", "hierarchy-max"):
        rows.append({"method": method, "subset": "mean-per-class",
                     "top1": _mean(_mean(r[method] for r in rs) for rs in per_class.values()), "n": len(per_class)})
    wrong = Counter((r["class"], r["predicted"]) for r in records if not r["predict"] and r["predicted"] is not None)
    mistakes = [{"class": c, "predicted": p, "n": n, "of": len(per_class[c])}
                for (c, p), n in sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))[:MISTAKES_SHOWN]]
    resolved = [{"class": name, "wnid": c.wnid, "synset": c.synset, "seen": c.wnid in seen, "ambiguous": c.ambiguous,
                 "also": list(c.also)} for name, c in classes.items()]
    calibration = clf.score_calibration
    return {"rows": rows, "images": len(records), "classes": len(per_class),
            "score_calibration": None if calibration is None else calibration.source,
            "per_class": [{"class": c, "synset": classes[c].synset, "n": len(rs), "predict": _mean(r["predict"] for r in rs),
                           "hierarchy-max": _mean(r["hierarchy-max"] for r in rs)} for c, rs in sorted(per_class.items())],
            "photos": [{"image": r["image"], "class": r["class"], "predicted": r["predicted"], "right": r["predict"]}
                       for r in records],
            "mistakes": mistakes, "resolved": resolved, "added": added,
            "skipped": [{"class": c, "reason": why} for c, why in sorted(skipped.items())],
            "skipped_classes": sorted(skipped), "unreadable": unreadable}


def _score(clf: Any, root: Path, items: list[tuple[Path, str]], classes: dict[str, _Class], groups: dict[str, str],
           progress: bool) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """One record per readable photo of a class in ``classes``, scored among its group's classes
    through ``predict``; and ``{"image", "error"}`` per unreadable one."""
    from tqdm import tqdm

    from kgzsl.inference.labels import LabelError

    seen = set(clf.backbone.wnids)
    members: dict[str, list[str]] = defaultdict(list)
    for name in classes:
        members[groups[name]].append(name)
    by_group = defaultdict(list)
    for path, name in items:
        if name in classes:
            by_group[groups[name]].append((path, name))
    records, unreadable = [], []
    bar = tqdm(total=sum(len(v) for v in by_group.values()), desc="photos", disable=None if progress else True)
    for group, photos in sorted(by_group.items()):
        candidates = members[group]
        answers = []
        for start in range(0, len(photos), _CHUNK):  # the progress bar moves chunk by chunk
            try:
                answers += clf.predict_detailed([p for p, _ in photos[start:start + _CHUNK]],
                                                candidate_labels=candidates, top_k=1)
            except LabelError as exc:  # two folders naming one class
                raise InputError(f"the class folders of {root} (group {group!r}): {exc}") from None
            bar.update(len(photos[start:start + _CHUNK]))
        readable = [(photo, answer) for photo, answer in zip(photos, answers) if "error" not in answer]
        unreadable += [{"image": str(path), "error": answer["error"]}
                       for (path, _), answer in zip(photos, answers) if "error" in answer]
        hier = _hierarchy_max(clf, [p for (p, _), _ in readable], {classes[c].index: c for c in candidates})
        for ((path, name), answer), h in zip(readable, hier):
            got = answer["predictions"][0]["label"]
            records.append({"image": str(path), "class": name, "group": group, "seen": classes[name].wnid in seen,
                            "candidates": len(candidates), "predicted": got, "predict": got == name,
                            "hierarchy-max": h == name})
    bar.close()
    if unreadable:
        logger.warning("%d photo(s) could not be read and are left out of the figures (first: %s)", len(unreadable),
                       unreadable[0]["error"])
    return records, unreadable


def _hierarchy_max(clf: Any, photos: list[Path], candidates: dict[int, str]) -> list[str | None]:
    """Per photo, the candidate (``node index -> class``) whose seen descendants-or-self get the
    backbone's highest probability."""
    from kgzsl.vision.images import load_batch

    ancestors = clf.seen_ancestors()
    seen_nodes = clf.seen_nodes()
    owners: list[list[str]] = []  # per backbone class, the candidates it belongs to
    for j in seen_nodes.tolist():
        ups = ancestors.get(j, {}) if j >= 0 else {}
        owners.append([candidates[a] for a in sorted(ups, key=ups.get) if a in candidates])  # nearest first
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
    """The result as a text table: one line per subset, one column per method; then the most
    frequent mistakes (a class folder named by wnid shows its synset) and the senses that folders
    named by ambiguous words were read as."""
    subsets = list(dict.fromkeys(r["subset"] for r in result["rows"]))
    table = {(r["method"], r["subset"]): r for r in result["rows"]}
    lines = [f"{'subset':<24} {'n':>5} {'predict':>9} {'hierarchy-max':>14} {'chance':>8}"]
    for s in subsets:
        n = table.get(("predict", s), {}).get("n", "")
        cells = [f"{table[(m, s)]['top1']:.3f}" if (m, s) in table else "" for m in ("predict", "hierarchy-max", "chance")]
        lines.append(f"{s:<24} {n:>5} {cells[0]:>9} {cells[1]:>14} {cells[2]:>8}")
    lines.append("(predict: kgzsl's first answer among the photo's group of classes; hierarchy-max: the class above "
                 "the backbone's likeliest own class, all the plain CNN can say; chance: 1 / the classes to choose from)")
    for s_ in result.get("skipped", []):
        lines.append(f"skipped class folder {s_['class']!r}: {s_['reason']}")
    if result.get("unreadable"):
        lines.append(f"{len(result['unreadable'])} unreadable photo(s) left out, e.g. {result['unreadable'][0]['error']}")
    if result.get("mistakes"):
        shown = {r["class"]: r["synset"] if r["class"] == r["wnid"] else r["class"] for r in result.get("resolved", [])}
        lines.append("most frequent mistakes (class -> predict's answer: photos):")
        lines += [f"  {shown.get(m['class'], m['class'])} -> {shown.get(m['predicted'], m['predicted'])}: "
                  f"{m['n']} of {m['of']}" for m in result["mistakes"]]
    ambiguous = [r for r in result.get("resolved", []) if r.get("ambiguous")]
    if ambiguous:
        lines.append(f"class folders named by a word of several senses, as read ({len(ambiguous)}; rename a folder to a "
                     "synset name, like plate.n.04, to choose another sense):")
        for r in ambiguous[:SENSES_SHOWN]:
            gloss = wordnet_gloss(r["synset"])
            gloss = gloss if len(gloss) <= 70 else gloss[:67].rstrip() + "..."
            also = f" (or, as a photo fits: {', '.join(r['also'])})" if r.get("also") else ""
            lines.append(f"  {r['class']} = {r['synset']}{also}" + (f": {gloss}" if gloss else ""))
        if len(ambiguous) > SENSES_SHOWN:
            lines.append(f"  ... and {len(ambiguous) - SENSES_SHOWN} more (--json lists every class)")
    return "\n".join(lines)
