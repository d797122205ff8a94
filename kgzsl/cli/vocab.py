"""Open-vocabulary subcommands of ``kgzsl``: explain, index, search, add-concept, calibrate.

Kept apart from :mod:`kgzsl.cli` so each file stays one concept; heavy imports happen inside the
handlers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from kgzsl.cli._common import add_extraction_args, add_original_backbone_arg, extraction_job, label_list, positive_int, printable

__all__ = ["add_vocabulary_parsers"]

logger = logging.getLogger(__name__)


def _load_with_concepts(run: str, device: str, concept_file: str | None, finetuned: bool = True):
    from kgzsl.inference.classifier import ZeroShotClassifier

    clf = ZeroShotClassifier.load(run, device=device, finetuned=finetuned)
    if concept_file:
        from kgzsl.inference.concepts import load_concepts

        load_concepts(clf, concept_file)
    return clf


def _cmd_explain(args: argparse.Namespace) -> int:
    from kgzsl.tasks.explain import check_png_path, explain, explain_png, format_explanation

    if args.png:
        check_png_path(args.png)  # before anything is computed
    clf = _load_with_concepts(args.run, args.device, args.concept_file, finetuned=not args.original_backbone)
    result = explain(clf, args.image, args.label, top_k=args.top_k)
    if args.png:
        result["png"] = str(explain_png(result, args.png))
    print(json.dumps(result, indent=2) if args.json else format_explanation(result)
          + (f"\n  drawing: {result['png']}" if args.png else ""))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.utils.distributed import close_distributed
    from kgzsl.tasks.search import build_index, check_index_path

    check_index_path(args.out)  # before the run is loaded: a folder, or a file that is no index, is refused
    ctx, workers, amp = extraction_job(args)
    try:
        clf = ZeroShotClassifier.load(args.run, device=ctx.device)
        stats = build_index(clf.backbone, args.dir, args.out, progress=not (args.no_progress or args.quiet),
                            batch_size=args.batch_size, num_workers=workers, amp=amp, dist_ctx=ctx)
    finally:
        close_distributed(ctx)
    if not ctx.is_main:
        return 0
    print(f"index {args.out}: {stats['images']} images ({stats['new']} new, {stats['reused']} unchanged, "
          f"{stats['removed']} removed, {stats['failed']} unreadable)")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from kgzsl.graph.wordnet import gloss
    from kgzsl.inference.labels import LabelError
    from kgzsl.tasks.search import search

    clf = _load_with_concepts(args.run, args.device, args.concept_file)  # loaded once for every query
    results, blocks, failed = [], [], 0
    for text in args.query:
        try:
            hits = search(clf, args.index, text, top_k=args.top_k)
        except LabelError as exc:
            if len(args.query) == 1:
                raise
            failed += 1  # one bad query does not cost the others
            print(f"{text}: {exc.cli_text()}", file=sys.stderr)
            continue
        results.append({"query": text, "hits": hits})
        query = clf.resolve_labels([text])[0]  # the sense the images were ranked by, as predict reports it
        also = [clf.names[i] for i in query.senses]
        sense = (lambda hit: f"  ({hit['synset']})") if also else (lambda hit: "")  # which one each image fitted
        meaning = gloss(query.synset)  # "Eiffel" is the engineer: the definition says so
        blocks.append(f"{text} = {query.synset}" + (f": {meaning}" if meaning and not also else "")
                      + (f" (or {', '.join(also)}, whichever an image fits best)" if also else "")
                      + "".join(f"\n{h['score']:9.3f}  {printable(h['path'])}{sense(h)}" for h in hits))
    if args.json:  # one query: its hits; several: each query with its hits
        print(json.dumps(results[0]["hits"] if len(args.query) == 1 else results, indent=2))
    else:
        print("\n\n".join(blocks))
    if failed:
        print(f"{failed} of {len(args.query)} queries failed", file=sys.stderr)
    return 1 if failed else 0


def _cmd_add_concept(args: argparse.Namespace) -> int:
    from kgzsl.errors import InputError
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.inference.concept_store import store_concepts
    from kgzsl.inference.concepts import add_concepts

    if (args.word is None) == (args.file is None):
        raise InputError("give one word (kgzsl add-concept RUN WORD) or a taxonomy file (--file taxonomy.yaml)")
    if args.file and (args.parents is not None or args.description or args.sense or args.aliases):
        raise InputError("--parents, --description, --sense and --aliases are for one WORD; in a --file each "
                         "entry has its own 'parents:', 'description:', 'sense:' and 'aliases:'")
    split = (lambda text: [p.strip() for p in text.split(",") if p.strip()] or None)
    parents = split(args.parents) if args.parents is not None else None
    if args.parents is not None and not parents:
        raise InputError("--parents is empty: give one or more parent classes, e.g. --parents 'motor scooter'")
    clf = ZeroShotClassifier.load(args.run, device=args.device)
    if args.file:
        report = add_concepts(clf, args.file)
    else:
        entry = {"name": args.word, "parents": parents, "description": args.description, "sense": args.sense,
                 "aliases": split(args.aliases) if args.aliases else None}
        report = add_concepts(clf, [{k: v for k, v in entry.items() if v is not None}])
    stored = None
    # a file also refreshes stored rows that no longer match the run; a run with no concepts gets no files
    if report.added or (args.file and clf.added_wnids):
        stored = store_concepts(clf)  # before anything is said to be added
    for res in report.existing:
        another = "; to add another sense, pass --sense" if res.label in report.other_senses else " for it"
        print(f"{res.label!r} is already a node of the run ({res.synset}): nothing changed{another}")
    if len(report.added) <= 5:
        for res in report.added:
            print(f"added {res.label!r} as {res.synset}" + (f" ({res.wnid})" if res.wnid != res.synset else ""))
    else:
        print(f"added {len(report.added)} concepts ({report.new_nodes} new nodes) in one propagation")
    if stored is not None:
        before = len(clf.added_wnids) - report.new_nodes
        earlier = f" ({before} from earlier additions)" if before and report.added else ""
        print(f"the run's {len(clf.added_wnids)} added nodes{earlier} are stored in {stored} (rows) and "
              f"{stored.with_suffix('.yaml')} (the list); loading the run reads them without re-propagating")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from kgzsl.inference.adaptation import MAX_CANDIDATES, MIN_IMAGES_PER_CANDIDATE
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.tasks.abstain import calibrate_abstain, check_keep
    from kgzsl.tasks.calibrate import calibrate_scores, top1_among
    from kgzsl.errors import InputError
    from kgzsl.graph.wordnet import WNID_RE
    from kgzsl.vision.folders import class_folders

    check_keep(args.keep)  # before anything is written
    labels = label_list(args.labels, "to take the class sub-folders of --images as the classes")
    images = Path(args.images)
    subfolders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if images.is_dir() else []
    folders = [p for p in subfolders if WNID_RE.match(p.name)]
    clf = ZeroShotClassifier.load(args.run, device=args.device)
    had_concepts, earlier = len(clf.added_wnids), clf.score_calibration
    why_not = "that needs in-set images, in sub-folders named by a label or a wnid, or with --labels"
    if labels is None and not folders and subfolders:  # sub-folders named by labels, as benchmark photos takes them
        named = class_folders(images)
        failed = {}
        for name in named:
            try:
                clf.resolve_labels([name])
            except InputError as exc:
                failed[name] = exc.cli_text()
        misspelt = [name for name, why in failed.items() if "did you mean" in why]  # close to a label
        if misspelt and len(failed) < len(named):  # class folders, one misspelt: nothing is written
            raise InputError(f"{len(misspelt)} of the {len(named)} class folders of {images} name no label but come "
                             f"close to one ({', '.join(map(repr, misspelt[:5]))}; {misspelt[0]!r}: "
                             f"{failed[misspelt[0]]}); rename them, or give --labels naming the classes the images show")
        if failed:  # a folder of unlabelled images in sub-folders of any name (dates, "misc")
            first = next(iter(failed))
            why_not = (f"the sub-folders of {images} are not all labels ({failed[first]}); rename or move those that "
                       "are not, or give --labels naming the classes all its images show")
        else:
            clf.resolve_labels(named)
            labels = named
            print(f"in-set classes: the {len(named)} sub-folders of {images} ({', '.join(named[:5])}"
                  f"{', ...' if len(named) > 5 else ''})")
    abstain = labels is not None or bool(folders)  # else unlabelled images: no in-set classes to set it on
    if abstain:  # a label the threshold cannot be set on fails now, before the run's calibration is replaced
        resolved = clf.resolve_labels(labels if labels is not None else [p.name for p in folders])
        added = set(clf.added_wnids[had_concepts:])
        new = [r.synset for r in resolved if r.wnid in added]
        if new:  # WordNet nouns among the classes that were not nodes: stored in the run, as predict stores them
            more = len(added) - len(new)
            print(f"added {len(new)} of the classes to the run as concepts (WordNet nouns that were not graph nodes"
                  f"{f', with {more} missing ancestors' if more else ''}): {', '.join(new[:8])}"
                  f"{', ...' if len(new) > 8 else ''}")
    if args.abstain_only:  # the threshold on the scores as they are: no score calibration is written
        if not abstain:
            raise InputError(f"--abstain-only sets the 'none of these' threshold alone: {why_not}")
        result = calibrate_abstain(clf, keep=args.keep, images=args.images, labels=labels, progress=not args.quiet)
        kind = "the run's score calibration" if clf.score_calibration is not None else "the scores as they are"
        print(f"abstain threshold {result['threshold']:.4f} on the {result['score']} ({result['method']}), over "
              f"{kind}: keeps {result['kept']:.1%} of {result['inputs']} in-set inputs; stored in "
              f"{Path(args.run) / 'abstain.json'}")
        return 0
    # class folders: what the calibration does to top-1 among their classes, on their own images
    named_classes = [p.name for p in folders] if folders else labels if args.labels is None else None
    check = _top1_check(clf, images, named_classes, quiet=args.quiet) if named_classes else None
    calib = calibrate_scores(clf, args.images, progress=not args.quiet, abstain_follows=abstain)
    kept = 0 if calib.features is None else calib.features.size(0)
    most = min(kept // MIN_IMAGES_PER_CANDIDATE, MAX_CANDIDATES)
    sizes = "of 2 candidates are" if most == 2 else f"of 2 to {most} candidates are"
    fitted = f"label lists {sizes} fitted to them (for a list whose classes these images " \
        "do not show, `kgzsl predict --no-adapt`, or \"adapt\": false in a served request)" if most >= 2 else \
        f"too few to fit label lists to them (that needs {2 * MIN_IMAGES_PER_CANDIDATE} images or more)"
    print(f"score calibration on {calib.source} (real logits: mean {calib.target_mean:.3f}, spread "
          f"{calib.target_std:.3f}); stored in {Path(args.run) / 'score_calibration.safetensors'} with {kept} "
          f"feature vectors: {fitted}")
    if earlier is not None:
        print(f"it replaces the run's earlier calibration ({earlier.source})")
    if check is not None:
        feats, truth, before = check
        after = top1_among(clf, feats, truth, named_classes)
        print(f"top-1 among the {len(named_classes)} classes on their {len(truth)} images: {before:.3f} before "
              f"this calibration, {after:.3f} after (on the images it was fitted to; other classes may fare otherwise)")
        if after < before:
            logger.warning("this score calibration lowers top-1 on your labelled images (%.3f to %.3f): with few "
                           "images, or images like ImageNet's photos, centring can cost accuracy; `kgzsl calibrate "
                           "RUN --images DIR --abstain-only` sets the 'none of these' threshold and leaves the scores "
                           "as they were", before, after)
    if not abstain:
        print(f"no 'none of these' threshold set (predict --abstain): {why_not}")
        return 0
    result = calibrate_abstain(clf, keep=args.keep, images=args.images, labels=labels, progress=not args.quiet)
    print(f"abstain threshold {result['threshold']:.4f} on the {result['score']} ({result['method']}): keeps "
          f"{result['kept']:.1%} of {result['inputs']} in-set inputs; stored in {Path(args.run) / 'abstain.json'}")
    return 0


def _top1_check(clf: Any, images: Path, classes: list[str], quiet: bool) -> tuple[Any, list[str], float] | None:
    """``(features, truth, top-1 before calibrating)`` of the images of class folders, or None when no
    image of them can be read."""
    from kgzsl.tasks.calibrate import top1_among
    from kgzsl.vision.extract import extract_features
    from kgzsl.vision.folders import image_folder

    items = image_folder(images, wnids=classes)  # the class folders' images, whatever the folders' names
    if not items:
        return None
    feats, ok = extract_features(clf.backbone, [p for p, _ in items], progress=not quiet)
    truth = [c for (_, c), good in zip(items, ok.tolist()) if good]
    if not truth:
        return None
    return feats[ok], truth, top1_among(clf, feats[ok], truth, classes)


def add_vocabulary_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the open-vocabulary subcommands on ``kgzsl``'s subparsers."""
    p = sub.add_parser("explain", help="which seen classes and WordNet paths carry a label's score for an image")
    p.add_argument("run", help="run folder written by `kgzsl train`")
    p.add_argument("image", help="image file")
    p.add_argument("--label", required=True, help="word, synset name or wnid (a graph node or an added concept)")
    p.add_argument("--top-k", type=positive_int, default=5, help="similar seen classes and image evidence listed "
                   "(default 5)")
    p.add_argument("--png", help="also draw the graph neighbourhood to this PNG file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--concept-file", help="taxonomy file (YAML or CSV) of concepts to add first")
    p.add_argument("--device", default="auto")
    add_original_backbone_arg(p)
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser("index", help="cache backbone features of a folder of images for `kgzsl search` "
                       "(incremental: only new or changed files are processed)")
    p.add_argument("run", help="run folder written by `kgzsl train` (its backbone computes the features)")
    p.add_argument("dir", help="image folder (searched recursively)")
    p.add_argument("--out", required=True, help="index file to write or update (an existing file that is not "
                   "a kgzsl index is refused, never overwritten)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_extraction_args(p)
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="rank indexed images by a concept (text → images)")
    p.add_argument("run", help="run folder written by `kgzsl train` (the one the index was built with)")
    p.add_argument("index", help="index file written by `kgzsl index`")
    p.add_argument("query", nargs="+", help="word, synset name or wnid (a graph node or an added concept); "
                   "several queries are answered one after the other, the run loaded once")
    p.add_argument("--top-k", type=positive_int, default=10, help="images listed per query, best first (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a list")
    p.add_argument("--concept-file", help="taxonomy file (YAML or CSV) of concepts to add first")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("add-concept", help="add concepts to a run without retraining (stored with the run)")
    p.add_argument("run", help="run folder written by `kgzsl train`")
    p.add_argument("word", nargs="?", help="a WordNet noun not in the graph, or a class of your own (then give "
                   "--parents)")
    p.add_argument("--file", help="a taxonomy file (YAML or CSV: name, parents, description, aliases, sense per "
                   "entry), added in one propagation; see docs/taxonomy.md")
    p.add_argument("--parents", help="comma-separated parents (words, synset names, wnids): makes WORD a class of "
                   "your own under them")
    p.add_argument("--description", help="text for the new class's feature (default: the word)")
    p.add_argument("--aliases", help="comma-separated other labels for a class of your own")
    p.add_argument("--sense", help="the synset name or wnid to use for an ambiguous word")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_add_concept)

    p = sub.add_parser("calibrate", help="calibrate scores on your own unlabelled images (and, given in-set "
                       "classes, the 'none of these' threshold)")
    p.add_argument("run", help="run folder written by `kgzsl train`")
    p.add_argument("--images", required=True, help="images from your domain (searched recursively, no labels "
                   "needed); with one sub-folder per class named by a label or a wnid, or with --labels, also sets the "
                   "abstain threshold")
    p.add_argument("--keep", type=float, default=0.95, help="share of in-set images to keep (default 0.95)")
    p.add_argument("--labels", help="comma-separated candidates the images are scored against")
    p.add_argument("--abstain-only", action="store_true", help="set the 'none of these' threshold alone and leave "
                   "the scores as they are (no score calibration: with few images it can cost accuracy)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_calibrate)
