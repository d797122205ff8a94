"""``kgzsl demo``: the whole path on the offline default, ending in zero-shot predictions on photos.

Builds (or reuses) the ImageNet-1k + 21K WordNet graph (the config's ``graph.path``, resolved as
everywhere: see :func:`kgzsl.utils.paths.resolve_graph_dir`), trains (or reuses) the default DGP model
on EfficientNet-Lite0's 1,000 rows, then classifies real photos that ship inside the
scikit-image, scikit-learn and matplotlib wheels against labels that are *not* ImageNet-1k
classes: the backbone never had a classifier row for any of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kgzsl.errors import MissingPackageError
from kgzsl.training.config import DEMO_CONFIG, config_to_dict, load_config
from kgzsl.vision.samples import demo_photos

__all__ = ["DEMO_LABELS", "DEMO_RUN", "ensure_demo_run", "has_demo_run", "run_demo"]

logger = logging.getLogger(__name__)

DEMO_LABELS = ["cat", "dog", "bear", "coffee", "tea", "soup", "rocket", "motorcycle", "bicycle", "temple",
               "flower", "woman", "man", "horse", "bird"]

DEMO_RUN = Path("runs") / "demo"
"""The demo's run folder, from the current directory."""


def has_demo_run(config_path: str | Path | None = None, out_dir: str | Path | None = None) -> bool:
    """Whether ``out_dir`` (:data:`DEMO_RUN` by default) holds a finished run of the demo's config, which
    :func:`ensure_demo_run` then reuses."""
    previous = (Path(out_dir) if out_dir else DEMO_RUN) / "run.json"
    return previous.is_file() and json.loads(previous.read_text(encoding="utf-8")).get("config") == \
        config_to_dict(load_config(config_path or DEMO_CONFIG))


def ensure_demo_run(config_path: str | Path | None = None, out_dir: str | Path | None = None,
                    retrain: bool = False) -> Path:
    """The demo's run folder (:data:`DEMO_RUN` by default), trained (graph included) unless it holds a
    finished run of the same config."""
    from kgzsl.training.run import train_run

    out = Path(out_dir) if out_dir else DEMO_RUN
    if not retrain and has_demo_run(config_path, out):
        logger.info("reusing the trained run in %s", out)
    else:  # the demo sets everything up, the graph included
        train_run(load_config(config_path or DEMO_CONFIG), out_dir=out, build_graph=True)
    return out


def run_demo(config_path: str | Path | None = None, out_dir: str | Path | None = None, retrain: bool = False,
             labels: list[str] | None = None) -> str:
    """Run the demo and return its report (a text table).

    Args:
        config_path: Run config file or shipped config name; the shipped ``dgp-sgcn-conse``
            (:data:`~kgzsl.training.config.DEMO_CONFIG`) by default.
        out_dir: Run folder, reused when it holds a finished run of the same config; ``runs/demo``
            under the current directory by default.
        retrain: Train even if a matching run exists.
        labels: Candidate labels; :data:`DEMO_LABELS` by default.
    """
    from kgzsl.vision.backbones import imagenet_wnids
    from kgzsl.inference.classifier import ZeroShotClassifier

    photos = demo_photos()  # before the ten minutes of training: a missing demo extra is told at once
    if not photos:
        raise MissingPackageError("no demo photos found: install the demo extra (pip install 'kgzsl[demo]')")
    out = ensure_demo_run(config_path, out_dir, retrain)
    previous = out / "run.json"
    clf = ZeroShotClassifier.load(out)
    labels = labels or DEMO_LABELS
    label_log = logging.getLogger("kgzsl.inference.labels")
    level = label_log.level
    label_log.setLevel(logging.WARNING)  # the report below lists the sense chosen for every label
    try:
        resolved = clf.resolve_labels(labels)
    finally:
        label_log.setLevel(level)
    seen = set(imagenet_wnids())
    in_1k = [r.label for r in resolved if r.wnid in seen]
    records = clf.predict_detailed(photos, labels, top_k=3)
    summary = json.loads(previous.read_text(encoding="utf-8"))
    fits = [m for m in summary.get("members") or [summary] if m["epochs_run"]]  # the members that were trained
    epochs = ", ".join(f"{m['model'].upper() + ' ' if 'members' in summary else ''}{m['best_epoch']}" for m in fits)
    lines = [
        f"kgzsl demo — {summary['model'].upper()} on {summary['num_nodes']} WordNet nodes, backbone "
        f"{summary['backbone']}, trained on {summary['train']} seen rows (validation cosine "
        f"{summary['best_val_cosine']:.3f}, best epoch {epochs}, {summary['train_seconds']:.0f}s)",
        "candidate labels (" + ("none is an ImageNet-1k class: the backbone has no classifier row for any of them"
                               if not in_1k else "ImageNet-1k classes among them: " + ", ".join(in_1k)
                               + "; the backbone has no row for the others") + "):",
        "  " + ", ".join(f"{r.label}={r.synset}" for r in resolved),
        "",
        f"{'photo':<20} {'top-1':<22} {'top-2':<22} {'top-3':<22}",
    ]
    for rec in records:
        name = Path(rec["image"]).name
        if "error" in rec:
            lines.append(f"{name:<20} ERROR {rec['error']}")
            continue
        cells = [f"{p['label']} {p['score']:.2f}" for p in rec["predictions"]]
        lines.append(f"{name:<20} " + " ".join(f"{c:<22}" for c in cells))
    return "\n".join(lines)
