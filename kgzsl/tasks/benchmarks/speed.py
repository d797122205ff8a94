"""B3 ``kgzsl benchmark speed``: where the time goes, as ratios measured in one run.

- graph build (WordNet already loaded) at ImageNet-1k, 1k + 21K and all 82,115 noun synsets;
- one training epoch on the full graph vs on the receptive field of the seen rows (SGCN, DGP),
  and seconds to the best validation score with the shipped configs;
- peak RSS of training, the kgzsl way (receptive field, chunked final rows) and the full-graph way
  (each in a fresh child process, so nothing else counts);
- images/s of the bare backbone (its own 1,000-way top-5) vs the zero-shot classifier's top-5 over
  21,843 candidates (batch 1, 64), with the head as it chooses (the compiled int8 pass at batch 1,
  the dense product at batch 64) and with the dense float32 head;
- cold start of ``kgzsl --help`` and of ``kgzsl predict`` on one image.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from kgzsl.training.run import ROW_CHUNK
from kgzsl.utils.paths import shipped_dir

__all__ = ["run_speed", "time_per_call", "head_path"]

logger = logging.getLogger(__name__)
_CONFIGS = shipped_dir("configs")


def time_per_call(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> float:
    """Mean wall seconds of ``fn()`` over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def _graph_build(out: dict[str, Any]) -> None:
    from kgzsl.graph import build_wordnet_graph, load_wordnet, resolve_wnids

    wn = load_wordnet()
    sets = {"1k": resolve_wnids("imagenet1k")[0], "1k+21k": resolve_wnids("imagenet1k,imagenet21k")[0],
            "all_nouns": [f"n{s.offset():08d}" for s in wn.all_synsets("n")]}
    for name, wnids in sets.items():
        start = time.perf_counter()
        graph = build_wordnet_graph(wnids)
        seconds = time.perf_counter() - start
        out[f"graph_build_seconds_{name}"] = round(seconds, 3)
        out[f"graph_nodes_{name}"] = graph.num_nodes
        out[f"graph_edges_{name}"] = len(graph.edges)
    out["graph_build_seconds"] = out["graph_build_seconds_1k+21k"]


def _training(out: dict[str, Any], graph: Any, x: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor,
              to_best: bool, progress: bool) -> torch.Tensor | None:
    """Time full-graph vs receptive-field epochs; with ``to_best``, return the trained DGP's rows."""
    rows = None
    from kgzsl.training.config import config_to_dict, load_config
    from kgzsl.models import build_model, restrict
    from kgzsl.training.fit import fit, regression_loss, split_seen

    for name in ("sgcn", "dgp"):
        config = load_config(_CONFIGS / f"{name}.yaml")
        params = {k: v for k, v in config_to_dict(config.model).items() if k != "name"}
        torch.manual_seed(0)
        model = build_model(name, x.size(1), targets.size(1), **params)
        layers = model.operators(graph)
        opt = torch.optim.Adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
        full_adjs = [[op.to_torch() for op in ops] for ops in layers]
        sliced, inputs = restrict(layers, seen)
        rf_adjs = [[op.to_torch() for op in ops] for ops in sliced]
        rf_x = model.prepare_inputs(x[inputs], rf_adjs)

        def step(inp: Any, adjs: list, rows: torch.Tensor | None) -> None:
            model.train()
            pred = model(inp, adjs)
            loss = regression_loss(pred if rows is None else pred[rows], targets, config.train.loss)
            opt.zero_grad()
            loss.backward()
            opt.step()

        full = time_per_call(lambda: step(x, full_adjs, seen), repeat=3)
        rf = time_per_call(lambda: step(rf_x, rf_adjs, None), repeat=10)
        out[f"train_epoch_seconds_full_{name}"] = round(full, 4)
        out[f"train_epoch_seconds_rf_{name}"] = round(rf, 4)
        out[f"train_epoch_speedup_{name}"] = round(full / rf, 2)
        if to_best:
            torch.manual_seed(config.train.seed)
            model = build_model(name, x.size(1), targets.size(1), **params)
            tr, va = split_seen(seen, config.train.val_fraction, config.train.seed)
            result = fit(model, x, model.operators(graph), seen[tr], targets[tr], seen[va], targets[va],
                         config.train, progress=progress)
            out[f"train_seconds_to_best_{name}"] = round(result.seconds_to_best, 1)
            out[f"train_best_epoch_{name}"] = result.best_epoch
            with torch.no_grad():
                rows = model.eval().predict_rows(x, model.operators(graph), chunk_size=ROW_CHUNK)
    return rows


_RSS_CHILD = """
import resource, sys, torch, json
import torch.nn.functional as F

from kgzsl.training.run import ROW_CHUNK
from kgzsl.vision.backbones import load_backbone
from kgzsl.training.config import config_to_dict, load_config
from kgzsl.text.features import node_features
from kgzsl.graph import KnowledgeGraph
from kgzsl.models import build_model
from kgzsl.training.fit import fit, split_seen
name, mode = {name!r}, {mode!r}
g = KnowledgeGraph.load({graph!r}); x = node_features(g)
b = load_backbone(device="cpu"); y = F.normalize(b.classifier_rows(), dim=1)
seen = torch.tensor([g.index[w] for w in b.wnids])
cfg = load_config({config!r}, ["train.epochs=20", "train.checkpoint_every=0"])
m = build_model(name, x.size(1), y.size(1), **{{k: v for k, v in config_to_dict(cfg.model).items() if k != "name"}})
layers = m.operators(g)
if mode == "kgzsl":  # what `kgzsl train` does: receptive-field epochs, then every row in chunks
    tr, va = split_seen(seen, 0.05, 0)
    fit(m, x, layers, seen[tr], y[tr], seen[va], y[va], cfg.train, progress=False)
    with torch.no_grad():
        m.predict_rows(x, layers, chunk_size={chunk})
else:  # the reference's way: every node, every epoch
    adjs = [[o.to_torch() for o in l] for l in layers]
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for _ in range(2):
        loss = ((m(x, adjs)[seen] - y) ** 2).sum() / 2000; opt.zero_grad(); loss.backward(); opt.step()
# VmHWM is this process's own high-water mark (ru_maxrss would carry the parent's across fork/exec)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")]
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.stdout.write(json.dumps({{"peak_rss_mib": peak}}) + "\\n")
"""


def _peak_rss(out: dict[str, Any], graph_dir: str) -> None:
    """Peak RSS of training each model in a fresh child process, the kgzsl way and the full-graph way."""
    peaks: dict[str, float] = {}
    for mode in ("kgzsl", "full_graph"):
        for name in ("sgcn", "dgp"):
            code = _RSS_CHILD.format(name=name, mode=mode, graph=graph_dir, config=str(_CONFIGS / f"{name}.yaml"),
                                     chunk=ROW_CHUNK)
            child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
            if child.returncode != 0:
                raise RuntimeError(f"the peak-RSS child failed: {child.stderr[-2000:]}")
            peak = json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mib"]
            out[f"peak_rss_mib_{mode}_{name}"] = round(peak, 1)
            peaks[mode] = max(peaks.get(mode, 0.0), peak)
    out["train_peak_rss_mib"] = round(peaks["kgzsl"], 1)
    out["full_graph_step_peak_rss_mib"] = round(peaks["full_graph"], 1)


def round_medians(fns: dict[str, Callable[[], Any]], calls: int, rounds: int,
                  handover: bool = True) -> dict[str, list[float]]:
    """Per function, the median seconds per call of each round's block.

    The functions take turns in blocks of ``calls`` calls, ``rounds`` times, the order rotating
    from round to round, so each takes every place in turn. With ``handover`` the first call of
    each block only hands the caches over from the previous function and is not timed (at batch 1
    a call's speed depends on what ran before it).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm up
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name]
            if handover:
                fn()
            block = []
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                block.append(time.perf_counter() - start)
            times[name].append(statistics.median(block))
    return times


def paired_overhead(times: dict[str, list[float]], name: str, base: str) -> float:
    """Median over rounds of ``name``'s time over ``base``'s in the same round, minus 1.

    Load from other processes comes in bursts of seconds; blocks of one round run within a second
    of each other, so a per-round ratio cancels most of it where a ratio of overall medians does not.
    """
    return statistics.median(t / b for t, b in zip(times[name], times[base])) - 1


def head_path(head: Any, batch: int) -> str:
    """How ``head`` scores a batch of this size (:meth:`kgzsl.inference.head.LinearHead.path`);
    ``"float32"`` for a head without int8 paths (the grouped head of a list that claims seen classes)."""
    return head.path(batch) if hasattr(head, "path") else "float32"


def _prediction(out: dict[str, Any], backbone: Any, matrix: torch.Tensor, head: Any = None) -> None:
    """Images/s of the backbone as the plain 1,000-way classifier vs with the zero-shot head.

    Both sides do the whole job for a batch of the bundled photos: the bare backbone gives
    softmax top-5 over its own 1,000 classes, the classifier top-5 over ``matrix``'s candidates
    through ``head`` (the classifier's own head for those candidates; a :class:`kgzsl.inference.head.LinearHead`
    of ``matrix`` by default) and, for comparison where the head takes another path, through the
    dense float32 product. Overheads are per-round paired ratios (:func:`paired_overhead`).
    """
    from kgzsl.vision.samples import demo_photos
    from kgzsl.inference.head import LinearHead
    from kgzsl.vision.images import load_image

    photos = torch.stack([backbone.transform(load_image(p)) for p in demo_photos()])
    head, dense = head or LinearHead(matrix, int8="auto"), LinearHead(matrix, int8=False)
    head.topk(torch.zeros(1, matrix.size(1) - 1), 1)  # a one-off call is dense; the int8 copy is built on the next
    out["head_candidates"] = int(matrix.size(0))
    out["head_int8"] = bool(getattr(head, "int8", False))
    for batch in (1, 64):
        chunks = [photos[i:i + 1] for i in range(len(photos))] if batch == 1 else \
            [photos.repeat(batch // len(photos) + 1, 1, 1, 1)[:batch]]
        state = {"i": 0}

        def nxt() -> torch.Tensor:
            state["i"] = (state["i"] + 1) % len(chunks)
            return chunks[state["i"]]

        # "bare" is deliberately not the zero-shot head: the backbone's own 1,000-way float32 layer is the
        # baseline whose cost the head's overhead is measured against
        fns = {"bare": lambda: backbone.logits(nxt()).softmax(-1).topk(5),
               "classifier": lambda: head.topk(backbone(nxt()), 5)}
        if head_path(head, batch) != "float32":  # else the same computation: the time goes to more rounds
            fns["classifier_float32"] = lambda: dense.topk(backbone(nxt()), 5)
        with torch.inference_mode():
            t = round_medians(fns, calls=len(chunks) if batch == 1 else 1,
                              rounds=48 if batch == 1 else 32 // len(fns), handover=batch == 1)
        out[f"backbone_images_per_s_batch{batch}"] = round(batch / statistics.median(t["bare"]), 2)
        out[f"classifier_images_per_s_batch{batch}"] = round(batch / statistics.median(t["classifier"]), 2)
        out[f"head_overhead_batch{batch}"] = round(paired_overhead(t, "classifier", "bare"), 4)
        if "classifier_float32" in t:
            out[f"head_overhead_batch{batch}_float32"] = round(paired_overhead(t, "classifier_float32", "bare"), 4)
    out["head_batch1_path"], out["head_batch64_path"] = head_path(head, 1), head_path(head, 64)  # copies built now
    out["head_low_rank"] = getattr(head, "low_rank", None)
    with torch.inference_mode():
        feats = backbone(photos)
        probs, idx, _ = head.topk(feats, 5)
        ref = dense.logits(feats).softmax(-1)
        out["head_top5_equal_float32"] = bool(torch.equal(idx, ref.topk(5, dim=1).indices))
        out["head_max_probability_difference"] = float((probs - ref.gather(1, idx)).abs().max())


def _candidate_matrix(backbone: Any, graph: Any, rows: torch.Tensor | None, run_dir: Path | None
                      ) -> tuple[torch.Tensor, Any]:
    """The 21,843 ImageNet-1k + 21K candidate rows as the classifier scores them, and its head for them
    (None without a trained run)."""
    from kgzsl.graph import resolve_wnids

    wnids = resolve_wnids("imagenet1k,imagenet21k")[0]
    if run_dir is not None and (run_dir / "run.json").is_file():
        from kgzsl.inference.classifier import ZeroShotClassifier

        clf = ZeroShotClassifier.load(run_dir, device="cpu", backbone=backbone)
        known = set(clf.wnids)
        labels = [w for w in wnids if w in known]
        return clf.head(labels)[0], clf.candidate_head(labels)  # what predict scores against
    scale = backbone.classifier_rows().norm(dim=1).mean()
    if rows is None:  # no trained rows at hand: random ones of the same size
        rows = torch.randn(graph.num_nodes, backbone.feature_dim + 1, generator=torch.Generator().manual_seed(0))
    return F.normalize(rows[[graph.index[w] for w in wnids]], dim=1) * scale, None


def _startup(out: dict[str, Any], run_dir: Path | None) -> None:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kgzsl", "--help"], capture_output=True, check=True)
    out["startup_help_seconds"] = round(time.perf_counter() - start, 2)
    if run_dir is not None and (run_dir / "run.json").is_file():
        from kgzsl.vision.samples import demo_photos

        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kgzsl", "-q", "predict", str(run_dir), str(demo_photos()[0]),
                        "--labels", "cat,dog,bear"], capture_output=True, check=True)
        out["predict_one_image_cold_seconds"] = round(time.perf_counter() - start, 2)


def run_speed(run_dir: Path | None = None, to_best: bool = True, progress: bool = True) -> dict[str, Any]:
    """Measure B3 on the default ImageNet-1k + 21K graph; returns one flat dict of figures."""
    from kgzsl.vision.backbones import load_backbone
    from kgzsl.training.config import RunConfig
    from kgzsl.text.features import node_features
    from kgzsl.graph import load_or_build_graph
    from kgzsl.training.run import graph_path

    out: dict[str, Any] = {"benchmark": "speed", "threads": torch.get_num_threads()}
    _graph_build(out)
    config = RunConfig()
    graph = load_or_build_graph(graph_path(config.graph.path), config.graph.wnids)
    x = node_features(graph, encoder=config.features.encoder, use_gloss=config.features.gloss)
    backbone = load_backbone(config.backbone.name, weights=config.backbone.weights, device="cpu")
    seen = torch.tensor([graph.index[w] for w in backbone.wnids])
    targets = F.normalize(backbone.classifier_rows(), dim=1)
    rows = _training(out, graph, x, targets, seen, to_best, progress)
    _peak_rss(out, str(graph.path))
    _prediction(out, backbone, *_candidate_matrix(backbone, graph, rows, run_dir))
    _startup(out, run_dir)
    return out
