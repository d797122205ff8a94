"""B2 ``kgzsl benchmark imagenet-heldout``: predict classifier rows of hidden ImageNet-1k classes.

Hide some of the backbone's 1,000 seen rows, train on the rest, and compare the predicted rows
of the hidden classes with their real rows: mean cosine, and weight-space hit@1 / hit@5 (the
rank of a class's predicted row among all hidden classes' predicted rows, by cosine to its real
row; ties count against). Splits: ``random`` (200 classes, seeds 0, 1, 2 → mean ± std) and
``subtrees`` (every class under a fixed set of WordNet subtrees: felines, birds, snakes,
primates, musical instruments, wheeled vehicles, fruit and furniture — 217 classes whose close
relatives are hidden too, the harder case).
Baseline ``conse``: each hidden row is the similarity-weighted mean of the 10 training rows
whose text embeddings are closest (``conse-baseline`` when a ConSE model of its own config runs too).
"""

from __future__ import annotations

import logging
import statistics
from typing import Any

import torch
import torch.nn.functional as F

from kgzsl.errors import InputError
from kgzsl.training.config import RunConfig, config_to_dict
from kgzsl.models import Ensemble, build_model
from kgzsl.models.conse import neighbour_rows
from kgzsl.training.fit import fit, keep_every_row, split_seen

__all__ = ["SUBTREES", "heldout_splits", "weight_space_metrics", "conse_rows", "run_heldout"]

logger = logging.getLogger(__name__)

SUBTREES = {"n02120997": "feline", "n01503061": "bird", "n01726692": "snake", "n02469914": "primate",
            "n03800933": "musical instrument", "n04576211": "wheeled vehicle", "n13134947": "fruit",
            "n03405725": "furniture"}


def heldout_splits(graph: Any, seen_nodes: list[int], n_random: int = 200,
                   seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, list[int]]:
    """Positions (into ``seen_nodes``) of the hidden classes of every split."""
    splits = {}
    for seed in seeds:
        perm = torch.randperm(len(seen_nodes), generator=torch.Generator().manual_seed(seed))
        splits[f"random-s{seed}"] = sorted(perm[:n_random].tolist())
    roots = {graph.index[w] for w in SUBTREES if w in graph.index}
    index, _ = graph.ancestor_index()
    under = {a for a, b in zip(index[0].tolist(), index[1].tolist()) if b in roots}
    splits["subtrees"] = [i for i, n in enumerate(seen_nodes) if n in under or n in roots]
    return splits


def weight_space_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """Mean cosine and hit@1 / hit@5 of predicted rows against real rows (row ``i`` ↔ class ``i``)."""
    pred, true = F.normalize(pred, dim=1), F.normalize(true, dim=1)
    sim = true @ pred.T  # [hidden, hidden]: real row i against every predicted row
    own = sim.diagonal()
    rank = (sim >= own[:, None]).sum(1)  # includes itself: ties count against
    return {"mean_cosine": float(own.mean()), "hit1": float((rank <= 1).float().mean()),
            "hit5": float((rank <= 5).float().mean())}


def conse_rows(text: torch.Tensor, train_nodes: list[int], train_rows: torch.Tensor, hidden_nodes: list[int],
               top: int = 10) -> torch.Tensor:
    """ConSE in weight space (:func:`kgzsl.models.conse.neighbour_rows`): the similarity-weighted mean of
    the ``top`` textually closest training rows."""
    return neighbour_rows(text[hidden_nodes], text[train_nodes], train_rows, top)


def heldout_inputs(config: RunConfig) -> tuple[Any, torch.Tensor, list[int]]:
    """What B2 needs besides node features: the config's graph (built when missing), its backbone's
    real classifier rows and the node of each of the backbone's classes."""
    from kgzsl.graph import load_or_build_graph
    from kgzsl.training.run import graph_path
    from kgzsl.vision.backbones import load_backbone

    graph = load_or_build_graph(graph_path(config.graph.path), config.graph.wnids)
    backbone = load_backbone(config.backbone.name, weights=config.backbone.weights, device="cpu")
    return graph, backbone.classifier_rows(), [graph.index[w] for w in backbone.wnids]


def _mean_cosine(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float(F.cosine_similarity(pred, true, dim=1).mean()) if len(true) else float("nan")


def run_heldout(graph: Any, x: torch.Tensor, targets: torch.Tensor, seen_nodes: list[int],
                configs: dict[str, RunConfig], device: torch.device | str = "cpu", progress: bool = True,
                splits: dict[str, list[int]] | None = None, ensemble: bool = False) -> dict[str, Any]:
    """Train every model on every split and score the hidden rows.

    Args:
        graph: The class graph.
        x: ``[N, F]`` node features.
        targets: ``[len(seen_nodes), D]`` real rows of the seen classes (normalised here).
        seen_nodes: Node index of each seen class.
        configs: Model name → run config (model hyper-parameters and training settings).
        device: Where to train.
        progress: Progress bars.
        splits: Split name → hidden positions; :func:`heldout_splits` by default.
        ensemble: Also score the models together (the normalised mean of their rows, method
            ``"dgp+sgcn"`` ...); their configs must share the validation split.

    Returns:
        ``{"benchmark": "imagenet-heldout", "rows": [...], "summary": [...], "hidden_wnids": {...}}``:
        one row per (method, split), mean ± std over the random seeds, and each split's hidden classes.
        A model's row has ``val_cosine``, the mean cosine on its validation rows (seen rows kept
        out of training, never the hidden ones): the figure to choose settings by.

    Raises:
        kgzsl.errors.InputError: If ``ensemble`` is set and the configs' validation splits differ.
    """
    targets = F.normalize(targets, dim=1)
    splits = splits if splits is not None else heldout_splits(graph, seen_nodes)
    rows: list[dict[str, Any]] = []
    for split, hidden in splits.items():
        hidden_set = set(hidden)
        kept = [i for i in range(len(seen_nodes)) if i not in hidden_set]
        hidden_nodes = [seen_nodes[i] for i in hidden]
        train_nodes = [seen_nodes[i] for i in kept]
        # the baseline as published (similarity weights, 10 neighbours, every kept row); beside a ConSE
        # model of its own config (e.g. softmax weights) it is "conse-baseline"
        base = conse_rows(x, train_nodes, targets[kept], hidden_nodes)
        rows.append({"method": "conse-baseline" if "conse" in configs else "conse", "kind": "baseline",
                     "split": split, "n_hidden": len(hidden), **weight_space_metrics(base, targets[hidden])})
        hidden_rows: dict[str, torch.Tensor] = {}
        val_rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # model → (validation positions, rows)
        for name, config in configs.items():
            tr, va = split_seen(torch.tensor(kept), config.train.val_fraction, config.train.seed)
            kept_t = torch.tensor(kept)
            torch.manual_seed(config.train.seed)
            params = {k: v for k, v in config_to_dict(config.model).items() if k != "name"}
            model = build_model(name, x.size(1), targets.size(1), **params)
            layers = model.operators(graph)
            nodes = torch.tensor(seen_nodes)
            result = fit(model, x, layers, nodes[kept_t[tr]], targets[kept_t[tr]], nodes[kept_t[va]],
                         targets[kept_t[va]], config.train, device=device, progress=progress)
            # the validation rows first; then a model with nothing to train keeps every kept row, as a run's does
            with torch.no_grad():
                val_pred = model.predict_rows(x.to(device), layers, nodes[kept_t[va]]).cpu()
                keep_every_row(model, x, nodes[kept_t], targets[kept_t])
                pred = model.predict_rows(x.to(device), layers, torch.tensor(hidden_nodes)).cpu()
            hidden_rows[name], val_rows[name] = pred, (kept_t[va], val_pred)
            rows.append({"method": name, "kind": "model", "split": split, "n_hidden": len(hidden),
                         **weight_space_metrics(pred, targets[hidden]),
                         "val_cosine": _mean_cosine(val_pred, targets[kept_t[va]]), "best_epoch": result.best_epoch,
                         "train_seconds": round(result.seconds, 2)})
            logger.info("%s on %s: %s", name, split, rows[-1])
        if ensemble and len(configs) > 1:
            first = next(iter(val_rows.values()))[0]
            if any(not torch.equal(positions, first) for positions, _ in val_rows.values()):
                raise InputError("an ensemble needs the same validation rows for every model: give the configs "
                                 "the same train.seed and train.val_fraction")
            mean = Ensemble.combine(list(hidden_rows.values()))  # what a run of the ensemble predicts
            val_mean = Ensemble.combine([r for _, r in val_rows.values()])
            rows.append({"method": "+".join(configs), "kind": "ensemble", "split": split, "n_hidden": len(hidden),
                         **weight_space_metrics(mean, targets[hidden]),
                         "val_cosine": _mean_cosine(val_mean, targets[first])})
    summary = []
    for method in dict.fromkeys(r["method"] for r in rows):
        seeds = [r for r in rows if r["method"] == method and r["split"].startswith("random")]
        entry = {"method": method, "split": f"random x{len(seeds)}"}
        for key in ("mean_cosine", "hit1", "hit5", "val_cosine"):
            values = [r[key] for r in seeds if key in r]
            if not values:
                continue
            entry[key] = statistics.mean(values)
            entry[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return {"benchmark": "imagenet-heldout", "rows": rows, "summary": summary, "subtrees": SUBTREES,
            "hidden_wnids": {split: [graph.wnids[seen_nodes[i]] for i in hidden] for split, hidden in splits.items()}}
