"""B1 ``kgzsl benchmark fmnist``: zero-shot on Fashion-MNIST with an ImageNet-1k backbone.

Settings (each reported as top-1 and mean per-class accuracy):

- ``zsl-8``: images of the 8 classes that are not ImageNet-1k classes, those 8 as candidates;
- ``all-10``: all images, the 10 classes as candidates (predicted rows for all ten);
- ``gzsl``: all images; candidates are the 8 unseen classes (predicted rows) plus the 1,000
  ImageNet-1k classes with the backbone's own rows (T-shirt = jersey and Sandal are among them);
  right only if the answer is the image's class. Reported raw and with calibrated stacking,
  gamma chosen on a stratified subset of the *train* split, never on test.

Methods: ``predict`` (what a user gets: :meth:`ZeroShotClassifier.logits
<kgzsl.inference.classifier.ZeroShotClassifier.logits>` with its default scoring, on the first run,
no user data) and ``predict+images`` (the same after ``kgzsl calibrate`` on unlabelled images of
the train split, :func:`kgzsl.tasks.calibrate.calibrate_scores`: centring, then the candidates
fitted to those images, :mod:`kgzsl.inference.adaptation`; ``predict+images-centred`` stops after
the centring, ``adapt_to_images=False``; these rows also give ``mean_confidence`` and ``ece``, how
far predict's probabilities are from its accuracy); every trained propagation model
with the papers' protocol (``scoring="predicted"``: every candidate scored with its predicted row),
raw and ``+centred`` (hubness correction: each
candidate's scores minus their mean over unlabelled images of the train split — predictions of
graph-propagated rows tend to pile onto a few "hub" classes); ``linear-probe``, a supervised
ceiling (logistic regression fitted on the labelled train subset's features); and the baselines ``chance``, ``hierarchy-max`` /
``hierarchy-mean`` (max / mean backbone logit over the ImageNet-1k hyponyms of a class) and
``conse`` (Norouzi et al. 2014: softmax-weighted mean of the text embeddings of the top-10
ImageNet-1k classes, cosine to each candidate's text embedding).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from kgzsl.errors import InputError
from kgzsl.inference.head import LinearHead
from kgzsl.tasks.benchmarks.fmnist_data import FMNIST_CLASSES, fmnist_features, load_fmnist, stratified_subset
from kgzsl.training.config import DEMO_CONFIG
from kgzsl.tasks.metrics import calibrated_stacking, calibration_error, choose_gamma, mean_per_class_accuracy, \
    seen_unseen_accuracy, true_class_ranks

__all__ = ["run_fmnist", "Scorer"]

logger = logging.getLogger(__name__)

# A scorer maps pooled features [N, D] and candidate graph nodes to scores [N, C]
Scorer = Callable[[torch.Tensor, list[int]], torch.Tensor]


def _model_scorer(run_dir: Path, graph_index: dict[str, int], backbone: Any, scoring: str = "predicted",
                  calibration_features: torch.Tensor | None = None, adapt: bool = True) -> Scorer:
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.tasks.calibrate import calibrate_scores

    clf = ZeroShotClassifier.load(run_dir, device="cpu", backbone=backbone, scoring=scoring)  # the run's own checks
    if calibration_features is not None:
        calibrate_scores(clf, calibration_features, save=False)
    clf.adapt_to_images = adapt
    graph_wnids = sorted(graph_index, key=graph_index.get)
    known = set(clf.wnids)
    missing = [w for w in graph_wnids if w not in known]
    if missing:
        raise InputError(f"run {run_dir} lacks {len(missing)} nodes of the benchmark's graph (e.g. {missing[0]})")

    def score(feats: torch.Tensor, nodes: list[int]) -> torch.Tensor:
        return clf.logits(feats, [graph_wnids[n] for n in nodes])  # benchmark graph nodes, named by wnid

    return score


def _linear_probe(train: torch.Tensor, labels: torch.Tensor, classes: int, weight_decay: float = 1e-3) -> Scorer:
    """Multinomial logistic regression on labelled features (a supervised ceiling), fitted with L-BFGS."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    x = (train - mean) / std
    lin = torch.nn.Linear(x.size(1), classes)
    torch.nn.init.zeros_(lin.weight), torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), labels) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return lambda feats, nodes: lin((feats - mean) / std).detach()


def _hierarchy_scorer(logits_of: Callable[[torch.Tensor], torch.Tensor], below: list[list[int]],
                      reduce: str) -> Scorer:
    def score(feats: torch.Tensor, nodes: list[int]) -> torch.Tensor:
        logits = logits_of(feats)
        cols = []
        for node in nodes:
            idx = below[node]
            if not idx:
                cols.append(torch.full((feats.size(0),), float("-inf")))
            else:
                part = logits[:, idx]
                cols.append(part.max(1).values if reduce == "max" else part.mean(1))
        return torch.stack(cols, 1)

    return score


def _conse_scorer(logits_of: Callable[[torch.Tensor], torch.Tensor], text: torch.Tensor, seen_nodes: list[int],
                  top: int = 10) -> Scorer:
    def score(feats: torch.Tensor, nodes: list[int]) -> torch.Tensor:
        probs = logits_of(feats).softmax(-1)
        p, idx = probs.topk(top, dim=-1)
        emb = (p.unsqueeze(-1) * text[torch.tensor(seen_nodes)][idx]).sum(1) / p.sum(1, keepdim=True)
        return F.normalize(emb, dim=-1) @ F.normalize(text[nodes], dim=-1).T

    return score


def _setting_scores(scorer: Scorer, feats: torch.Tensor, labels: torch.Tensor, node_of: list[int],
                    unseen: list[int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Scores and target columns of the zsl-8 and all-10 settings."""
    mask = torch.isin(labels, torch.tensor(unseen))
    remap = {c: j for j, c in enumerate(unseen)}
    zsl_targets = torch.tensor([remap[int(c)] for c in labels[mask]])
    return {"zsl-8": (scorer(feats[mask], [node_of[c] for c in unseen]), zsl_targets),
            "all-10": (scorer(feats, node_of), labels)}


def _accuracy(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 with ties counted against, as in ``mean_per_class`` and ``evaluate`` (argmax credited a tie
    to the first class: the hierarchy baselines' many ties gave all-10 top-1 0.287 against 0.214 per class)."""
    return float((true_class_ranks(scores, targets) == 1).float().mean())


def _run_graph_and_text(run_dir: Path, summary: dict[str, Any]) -> tuple[Any, torch.Tensor]:
    """The graph a run was trained on and its ``[N, F]`` node text features, read from the run folder.

    The run's own copy of its graph (``nodes.tsv``, ``edges.tsv``, ``ancestors.tsv``, ``manifest.json``)
    and its ``node_features.safetensors``, as :mod:`kgzsl.inference.concept_state` reads them for
    concepts: a run copied or moved anywhere works without the graph folder ``run.json`` records,
    and nothing is written into that folder. Runs from before runs carried their graph fall back to
    the recorded graph folder (and their features are recomputed, cached there).

    The benchmark needs the graph for its node numbering (the candidates' columns, named by wnid),
    the ancestor table (the ImageNet-1k classes below each candidate, for the hierarchy baselines)
    and the node text features (the ConSE baseline).
    """
    from kgzsl.inference.concept_state import run_features, run_graph, run_text_spec

    graph = run_graph(run_dir, summary)
    return graph, run_features(run_dir, graph, run_text_spec(summary))


TRAIN_PER_CLASS = 200  # labelled train images per class: predict+images' calibration, the probe, centring


def train_subset(train_labels: torch.Tensor, limit_per_class: int | None = None) -> torch.Tensor:
    """The stratified train images B1 calibrates, centres and fits its linear probe on: 200 per class
    (2,000), or ``limit_per_class`` per class when fewer, so a quick run stays quick."""
    per_class = TRAIN_PER_CLASS if limit_per_class is None else min(TRAIN_PER_CLASS, limit_per_class)
    return stratified_subset(train_labels, per_class, seed=0)


def run_fmnist(runs: dict[str, Path], out_dir: Path, progress: bool = True,
               limit_per_class: int | None = None) -> dict[str, Any]:
    """Run B1 and write a confusion-matrix PNG of the best all-10 row (``predict`` or a model).

    Args:
        runs: Model name → finished run folder (all trained on the same graph and backbone).
        out_dir: Where the confusion matrix PNG goes.
        progress: Progress bars for feature extraction.
        limit_per_class: Use a stratified subset of the test images (quick runs), and at most as many train
            images per class for calibration, centring and the probe; None = all 10,000 and 200 per class.

    Returns:
        ``{"benchmark": "fmnist", "rows": [...], "n_images": N, "confusion_png": PATH, ...}``.
    """
    from kgzsl.vision.backbones import load_backbone
    import json

    first_dir = next(iter(runs.values()))
    first = json.loads((first_dir / "run.json").read_text())
    graph, text = _run_graph_and_text(first_dir, first)
    backbone = load_backbone(first["config"]["backbone"]["name"], weights=first["config"]["backbone"]["weights"],
                             device="cpu")
    _, test_labels = load_fmnist("test")
    test_idx = None if limit_per_class is None else stratified_subset(test_labels, limit_per_class, seed=0)
    feats, labels = fmnist_features(backbone, "test", indices=test_idx, progress=progress)
    _, train_labels = load_fmnist("train")
    val_feats, val_labels = fmnist_features(backbone, "train", indices=train_subset(train_labels, limit_per_class),
                                            progress=progress)
    logits_of = LinearHead(backbone.classifier_rows()).logits  # the backbone's own 1,000 rows

    node_of = [graph.index[c.wnid] for c in FMNIST_CLASSES]
    unseen = [c.label for c in FMNIST_CLASSES if not c.seen]
    seen_nodes = [graph.index[w] for w in backbone.wnids]
    seen_pos = {n: i for i, n in enumerate(seen_nodes)}
    anc_index, _ = graph.ancestor_index()
    below: list[list[int]] = [[] for _ in range(graph.num_nodes)]  # ImageNet-1k columns under each node
    for node, anc in zip(anc_index[0].tolist(), anc_index[1].tolist()):
        if node in seen_pos:
            below[anc].append(seen_pos[node])
    for node, pos in seen_pos.items():
        below[node].append(pos)
    user_run = runs.get(DEMO_CONFIG, runs.get("dgp", next(iter(runs.values()))))  # what `kgzsl demo` trains
    scorers: dict[str, tuple[str, Scorer]] = {
        "predict": ("predict", _model_scorer(user_run, graph.index, backbone, scoring="calibrated")),
        "predict+images": ("predict", _model_scorer(user_run, graph.index, backbone, scoring="calibrated",
                                                    calibration_features=val_feats)),
        "predict+images-centred": ("predict", _model_scorer(user_run, graph.index, backbone, scoring="calibrated",
                                                            calibration_features=val_feats, adapt=False)),
        **{name: ("model", _model_scorer(path, graph.index, backbone)) for name, path in runs.items()}}
    scorers["hierarchy-max"] = ("baseline", _hierarchy_scorer(logits_of, below, "max"))
    scorers["hierarchy-mean"] = ("baseline", _hierarchy_scorer(logits_of, below, "mean"))
    scorers["conse"] = ("baseline", _conse_scorer(logits_of, text, seen_nodes))

    rows: list[dict[str, Any]] = []
    for setting, n in (("zsl-8", 8), ("all-10", 10)):
        rows.append({"method": "chance", "kind": "baseline", "setting": setting, "top1": 1 / n,
                     "mean_per_class": 1 / n})
    probe_targets = {"zsl-8": [unseen.index(FMNIST_CLASSES[c].label) if not FMNIST_CLASSES[c].seen else -1
                               for c in range(10)], "all-10": list(range(10))}
    for setting, n in (("zsl-8", 8), ("all-10", 10)):  # supervised ceiling: fitted on the labelled train subset
        to = torch.tensor(probe_targets[setting])
        keep_train, keep_test = to[val_labels] >= 0, to[labels] >= 0
        probe = _linear_probe(val_feats[keep_train], to[val_labels][keep_train], n)
        s, t = probe(feats[keep_test], []), to[labels][keep_test]
        rows.append({"method": "linear-probe", "kind": "ceiling", "setting": setting, "top1": _accuracy(s, t),
                     "mean_per_class": mean_per_class_accuracy(s, t)})
    # gzsl columns: the 1,000 ImageNet-1k classes, then the 8 unseen Fashion-MNIST classes
    gzsl_target = {c.label: (backbone.wnids.index(c.wnid) if c.seen else 1000 + unseen.index(c.label))
                   for c in FMNIST_CLASSES}
    seen_mask = torch.arange(1000 + len(unseen)) < 1000
    unseen_nodes = [node_of[c] for c in unseen]
    confusion: dict[str, torch.Tensor] = {}
    setting_nodes = {"zsl-8": [node_of[c] for c in unseen], "all-10": node_of}
    for name, (kind, scorer) in scorers.items():
        for setting, (scores, targets) in _setting_scores(scorer, feats, labels, node_of, unseen).items():
            variants = [(name, scores)]
            if kind == "model":  # hubness correction: centre each class's scores on unlabelled train images
                variants.append((f"{name}+centred", scores - scorer(val_feats, setting_nodes[setting]).mean(0)))
            for method, s in variants:
                rows.append({"method": method, "kind": kind, "setting": setting, "top1": _accuracy(s, targets),
                             "mean_per_class": mean_per_class_accuracy(s, targets),
                             "largest_class_share": float(s.argmax(1).bincount().max() / s.size(0))})
                if kind == "predict":  # what predict's probabilities are worth: its logits' softmax
                    rows[-1].update(calibration_error(s, targets))
                if setting == "all-10":
                    confusion[method] = s.argmax(1)

        if kind == "predict":  # the gzsl settings below compare propagation models under the papers' protocol
            continue

        def gzsl_scores(f: torch.Tensor, scorer: Scorer = scorer, kind: str = kind) -> torch.Tensor:
            seen_part = logits_of(f) if kind == "model" else scorer(f, seen_nodes)
            return torch.cat([seen_part, scorer(f, unseen_nodes)], 1)

        g_targets = torch.tensor([gzsl_target[int(c)] for c in labels])
        g_val_targets = torch.tensor([gzsl_target[int(c)] for c in val_labels])
        scores = gzsl_scores(feats)
        finite = torch.isfinite(scores).all()
        gamma, _ = choose_gamma(gzsl_scores(val_feats), g_val_targets, seen_mask) if finite else (0.0, None)
        for label, s, g in (("gzsl", scores, 0.0), ("gzsl+cs", calibrated_stacking(scores, seen_mask, gamma), gamma)):
            split = seen_unseen_accuracy(s, g_targets, seen_mask)
            rows.append({"method": name, "kind": kind, "setting": label, "top1": _accuracy(s, g_targets),
                         "mean_per_class": _per_class_on(s, g_targets, labels),
                         "seen": split["seen"], "unseen": split["unseen"], "harmonic": split["harmonic"],
                         "gamma": float(g)})
    # the best of what a user gets (predict, after calibrate or not) and the models under the papers' protocol
    best = max((r for r in rows if r["kind"] in ("model", "predict") and r["setting"] == "all-10"),
               key=lambda r: r["top1"], default=None)
    png = None
    if best is not None:
        png = out_dir / f"fmnist-confusion-{best['method']}.png"
        _plot_confusion(labels, confusion[best["method"]], png, f"{best['method']} on Fashion-MNIST (all-10)")
    return {"benchmark": "fmnist", "n_images": int(labels.numel()), "rows": rows,
            "confusion_png": str(png) if png else None}


def _per_class_on(scores: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 (ties counted against) averaged over the Fashion-MNIST classes ``labels`` names."""
    correct = (true_class_ranks(scores, targets) == 1).float()
    return float(torch.stack([correct[labels == c].mean() for c in labels.unique()]).mean())


def _plot_confusion(labels: torch.Tensor, pred: torch.Tensor, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kgzsl.utils.io import atomic_path

    n = len(FMNIST_CLASSES)
    cm = torch.zeros(n, n)
    cm.index_put_((labels, pred), torch.ones(labels.numel()), accumulate=True)
    cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm.numpy(), cmap="Blues", vmin=0, vmax=1)
    names = [c.name + ("*" if c.seen else "") for c in FMNIST_CLASSES]
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (* = ImageNet-1k class)")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
