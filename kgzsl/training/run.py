"""A training run end to end: graph → features → targets → fit → a self-contained run folder.

A run folder holds everything prediction needs, without the graph or the text encoder::

    runs/<name>/
      config.yaml        the resolved config
      model.safetensors  propagation weights (+ model name and hyper-parameters in the header)
      rows.safetensors   predicted [W | b] rows for every node, and the train/val/holdout node ids
      nodes.tsv          node ids, synset names, lemma names, glosses (row order of ``rows``)
      edges.tsv, ancestors.tsv, manifest.json
                         the rest of the graph trained on: with nodes.tsv the run folder is itself a
                         graph folder (``KnowledgeGraph.load(run_dir)``), so concepts and explanations
                         need no graph folder
      node_features.safetensors  the ``[N, F]`` node text features the model ran on (concepts)
      history.json       per-epoch training loss and validation cosine (per member for an ensemble)
      loss.png           the loss curves
      run.json           summary: timings, best epoch, counts, seed, library versions (written last)
      checkpoint.safetensors  resumable training state (see :func:`kgzsl.training.fit.fit`); exists only
                         while training or after an interruption, removed once the run is complete
                         (an ensemble keeps one per member, ``checkpoint-<i>-<model>.safetensors``)

An ensemble (``model.name: dgp+sgcn``, :class:`kgzsl.models.Ensemble`) trains its members one after
the other, each by the same procedure as alone (its own operators, early stopping and checkpoint);
the rows are the normalised mean of theirs.

A run folder can be copied anywhere: nothing in it refers to the graph folder or to the current
directory (``run.json`` records the graph's absolute path for information only).

Every file is written atomically (:mod:`kgzsl.utils.io`). An interrupted ``train_run`` (``kill -9``
included) continues with ``train_run(config, out_dir, resume=True)`` / ``kgzsl train --resume`` to
the same rows an uninterrupted run gives (bit-identical on the CPU; on a GPU up to its
non-deterministic kernels).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kgzsl.errors import InputError
from kgzsl.training.config import RunConfig, check_config, config_to_dict, save_config
from kgzsl.utils.device import resolve_device
from kgzsl.graph import load_graph, load_or_build_graph, resolve_graph_dir
from kgzsl.utils.io import atomic_path, cannot_write, check_writable, save_tensors, write_json
from kgzsl.models import Ensemble, build_model, check_model_name
from kgzsl.training.fit import FitResult, fit, keep_every_row, split_seen

__all__ = ["graph_path", "select_holdout", "train_run", "plot_history", "CHECKPOINT_FILE", "GRAPH_FILES",
           "NODE_FEATURES_FILE"]

logger = logging.getLogger(__name__)
ROW_CHUNK = 2048
"""Rows predicted per chunk after training: bounds peak memory (and is no slower than larger chunks)."""

#: name of the resumable training checkpoint inside a run folder
CHECKPOINT_FILE = "checkpoint.safetensors"
#: the graph's files a run folder carries (``nodes.tsv`` included: its rows are the run's row order)
GRAPH_FILES = ("nodes.tsv", "edges.tsv", "ancestors.tsv", "manifest.json")
#: the node text features the model was trained on, stored in the run folder
NODE_FEATURES_FILE = "node_features.safetensors"


def graph_path(spec: str) -> Path:
    """The absolute graph folder of ``graph.path`` (see :func:`kgzsl.utils.paths.resolve_graph_dir`).

    A value with a path separator, or naming a folder of the current directory, is a path relative
    to the current directory; a bare name is a folder of the graph data folder.
    """
    return resolve_graph_dir(spec)


def select_holdout(seen_wnids: list[str], holdout: list[str] | float | None, seed: int) -> list[str]:
    """Seen classes to hide from training.

    Args:
        seen_wnids: The seen classes present in the graph.
        holdout: A list of wnids, a fraction in (0, 1), or None.
        seed: Seed of the random draw for a fraction.

    Raises:
        ValueError: For a fraction outside (0, 1) or wnids that are not seen classes.
    """
    if holdout is None:
        return []
    if isinstance(holdout, float):
        if not 0 < holdout < 1:
            raise InputError(f"holdout fraction must be in (0, 1), got {holdout}")
        k = int(round(len(seen_wnids) * holdout))
        perm = torch.randperm(len(seen_wnids), generator=torch.Generator().manual_seed(seed))[:k]
        return sorted(seen_wnids[i] for i in perm.tolist())
    unknown = sorted(set(holdout) - set(seen_wnids))
    if unknown:
        raise InputError(f"holdout wnids that are not seen classes of the backbone in this graph: "
                         f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}")
    return sorted(set(holdout))


def plot_history(results: FitResult | list[tuple[str, FitResult]], path: Path, title: str) -> None:
    """Save the training loss and validation cosine curves as a PNG (one panel per ensemble member)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("", results)] if isinstance(results, FitResult) else results
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 4 * len(panels)), squeeze=False)
    for ax, (label, result) in zip(axes[:, 0], panels):
        head = f"{title}{': ' + label if label else ''}"
        if not result.epochs_run:  # a model with nothing to train (ConSE): no curves
            ax.axis("off")
            score = f"validation cosine {result.best_val_cosine:.4f}" if result.val_cosine else "no validation rows"
            ax.set_title(f"{head} — not trained (remembers the seen rows); {score}")
            continue
        epochs = range(1, len(result.train_loss) + 1)
        ax.plot(epochs, result.train_loss, label="training loss", color="tab:blue")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss", color="tab:blue")
        ax.set_yscale("log")
        ax.axvline(result.best_epoch, color="gray", linestyle="--", linewidth=1)
        if result.val_cosine:
            ax2 = ax.twinx()
            ax2.plot(range(1, len(result.val_cosine) + 1), result.val_cosine, label="validation cosine",
                     color="tab:orange")
            ax2.set_ylabel("validation cosine (held-out seen rows)", color="tab:orange")
            ax.set_title(f"{head} — best epoch {result.best_epoch}")
        else:
            ax.set_title(f"{head} — no validation rows: lowest loss at epoch {result.best_epoch}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _versions() -> dict[str, str]:
    from importlib import metadata

    from kgzsl._version import __version__

    out = {"kgzsl": __version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "torch_geometric", "nltk", "numpy", "safetensors"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _fit_summary(result: FitResult, remembers: int | None = None) -> dict[str, Any]:
    """The run.json fields of one model's training (``remembers``: the seen rows a model with nothing
    to train keeps in the end, :func:`~kgzsl.training.fit.keep_every_row`)."""
    summary = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "best_val_cosine": result.best_val_cosine if result.val_cosine else None,
               "train_seconds": round(result.seconds, 2), "seconds_per_epoch": round(result.seconds_per_epoch, 4),
               "seconds_to_best": round(result.seconds_to_best, 2), "resumed_from_epoch": result.resumed_from or None}
    return summary if remembers is None else {"remembers": remembers, **summary}


def train_run(config: RunConfig, out_dir: str | Path | None = None, progress: bool = True,
              resume: bool = False, build_graph: bool = False) -> Path:
    """Train the configured model and write its run folder.

    Args:
        config: The run config (graph, features, backbone, model, training).
        out_dir: Run folder; ``runs/<config.name>`` by default.
        progress: Show progress bars.
        resume: Continue from the folder's ``checkpoint.safetensors`` (written every
            ``config.train.checkpoint_every`` epochs) instead of starting over; the config must be
            the one the interrupted run used.
        build_graph: Build the graph from ``config.graph.wnids`` when it does not exist (what
            ``kgzsl demo`` does); by default a missing graph is an error naming the build command.

    Returns:
        The run folder.

    Raises:
        kgzsl.training.config.ConfigError: If a number of the config is out of its range (``train.epochs=0``).
        kgzsl.errors.OutputError: If the run folder cannot be written (checked before training).
        kgzsl.graph.GraphNotFoundError: If the graph does not exist and ``build_graph`` is False.
        kgzsl.training.checkpoint.CheckpointError: If ``resume`` finds a checkpoint of another config or graph.
        InputError: If ``resume`` is asked of a finished run (``run.json`` and no checkpoint), or of a
            folder that does not exist.
    """
    from kgzsl.vision.backbones import load_backbone
    from kgzsl.text.features import node_features

    check_config(config)  # a config built in Python; load_config has checked a file's
    check_model_name(config.model.name)  # a typo fails now, not after minutes of text features
    out = Path(out_dir) if out_dir else Path("runs") / config.name
    check_writable(out)  # before the graph loads and the training runs
    if resume and not out.is_dir():  # a misspelt folder would train from scratch for minutes
        raise InputError(f"--resume: {out} is no folder, so there is nothing to continue; give the folder of the "
                         "interrupted run with --out (or leave --resume out to train a new run)")
    if resume and (out / "run.json").is_file() and not any(out.glob("checkpoint*.safetensors")):
        raise InputError(f"the run in {out} is finished: --resume has nothing to continue (leave it out to train "
                         "the run again, which replaces it; or give the folder of an interrupted run with --out)")
    if not resume and (out / "run.json").is_file():
        kept = [name for name in ("score_calibration.safetensors", "concepts.yaml") if (out / name).is_file()]
        tuned = (out / "finetune").is_dir()  # a backbone fine-tuned to the old rows: predict would use it with the new
        logger.warning("%s holds a finished run: this training replaces it%s%s", out,
                       f"; its {' and '.join(kept)} stay and apply to the new rows (delete them to start clean)"
                       if kept else "",
                       f"; its fine-tuned backbone ({out / 'finetune'}) stays too, and predict uses it, though it was "
                       "tuned to the old rows: delete that folder, or run kgzsl finetune again" if tuned else "")
    device = resolve_device(config.train.device)
    start = time.perf_counter()
    load = load_or_build_graph if build_graph else load_graph
    # the backbone first: a misspelt name or a missing weights file fails at once, not after the text features
    backbone = load_backbone(config.backbone.name, weights=config.backbone.weights, device="cpu")
    graph = load(config.graph.path, config.graph.wnids)
    x = node_features(graph, encoder=config.features.encoder, use_gloss=config.features.gloss, progress=progress)
    raw_rows = backbone.classifier_rows().float()
    present = [i for i, w in enumerate(backbone.wnids) if w in graph.index]
    if not present:
        raise InputError(f"none of the backbone's {len(backbone.wnids)} classes is a node of {graph}; "
                         "build the graph from a wnid list that includes them (e.g. imagenet1k)")
    if len(present) < len(backbone.wnids):
        logger.warning("%d backbone classes are not in the graph and are ignored",
                       len(backbone.wnids) - len(present))
    seen_wnids = [backbone.wnids[i] for i in present]
    hidden = set(select_holdout(seen_wnids, config.train.holdout, config.train.holdout_seed))
    kept = [i for i in present if backbone.wnids[i] not in hidden]
    tr, va = split_seen(torch.tensor(kept), config.train.val_fraction, config.train.seed)
    node_of = torch.tensor([graph.index[backbone.wnids[i]] for i in kept])
    targets = F.normalize(raw_rows[kept], dim=1)

    torch.manual_seed(config.train.seed)
    params = {k: v for k, v in config_to_dict(config.model).items() if k != "name"}
    model = build_model(config.model.name, x.size(1), raw_rows.size(1), **params)
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    checkpoints = [out / CHECKPOINT_FILE] if len(members) == 1 else \
        [out / f"checkpoint-{i}-{m.name}.safetensors" for i, m in enumerate(members)]
    results = []
    started = [c.is_file() for c in checkpoints]
    for i, (member, checkpoint) in enumerate(zip(members, checkpoints)):  # an ensemble's members one after the other
        logger.info("training %r on %d seen rows (%d validation, %d held out) of %s", member, tr.numel(),
                    va.numel(), len(hidden), graph)
        later = resume and not started[i] and any(started[:i])  # the run stopped before this member began
        if later:
            logger.info("%s had not started when the run stopped: training it from the start", member.name)
        results.append(fit(member, x, member.operators(graph), node_of[tr], targets[tr], node_of[va], targets[va],
                           config.train, device=device, progress=progress, checkpoint_path=checkpoint,
                           resume=resume and not later))
    model.to(device).eval()
    layers = model.operators(graph)
    with torch.no_grad():  # the ensemble's validation rows, before a member remembers them (keep_every_row)
        val_pred = model.predict_rows(x.to(device), layers, node_of[va]).cpu() if va.numel() else None
    remembered = [len(kept) if keep_every_row(m, x, node_of, targets) else None for m in members]
    with torch.no_grad():
        rows = model.predict_rows(x.to(device), layers, chunk_size=ROW_CHUNK).cpu()  # bounded memory

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # it changed while training
        raise cannot_write(out, exc) from None
    if (out / "run.json").is_file():
        logger.warning("replacing the run in %s with this training", out)
    stale = out / "abstain.json"  # a threshold on the old rows' logits (the score calibration depends on the backbone only)
    if stale.is_file():
        stale.unlink()
        logger.warning("removed %s: its threshold was set on the replaced run's scores; calibrate again for a new one",
                       stale)
    (out / "run.json").unlink(missing_ok=True)  # its absence marks an incomplete run until the end
    save_config(config, out / "config.yaml")
    save_tensors(out / "model.safetensors", model.state_dict(),
                 metadata={"model": model.name, "hparams": json.dumps(model.hparams)})
    holdout_nodes = torch.tensor(sorted(graph.index[w] for w in hidden), dtype=torch.long)
    save_tensors(out / "rows.safetensors", {"rows": rows, "train_rows": node_of[tr], "val_rows": node_of[va],
                                            "holdout_rows": holdout_nodes},
                 metadata={"row_scale": f"{raw_rows.norm(dim=1).mean().item():.6f}", "backbone": backbone.name})
    for name in GRAPH_FILES:  # the run carries its graph: concepts and explanations work without the graph folder
        with atomic_path(out / name) as tmp:
            shutil.copyfile(Path(graph.path) / name, tmp)
    save_tensors(out / NODE_FEATURES_FILE, {"features": x.float().contiguous()},
                 metadata={"encoder": config.features.encoder, "use_gloss": str(config.features.gloss)})
    title = f"{config.name}: {model.name} on {graph.num_nodes} nodes"
    if len(members) == 1:
        result = results[0]
        write_json(out / "history.json", {"train_loss": result.train_loss, "val_cosine": result.val_cosine})
        plot_history(result, out / "loss.png", title)
        fitted: dict[str, Any] = _fit_summary(result, remembered[0])
    else:  # the ensemble's validation cosine is that of its own rows; each member's is listed too
        write_json(out / "history.json", {"members": [{"model": m.name, "train_loss": r.train_loss,
                                                       "val_cosine": r.val_cosine} for m, r in zip(members, results)]})
        plot_history([(m.name, r) for m, r in zip(members, results)], out / "loss.png", title)
        val = F.cosine_similarity(val_pred, targets[va], dim=1).mean().item() if val_pred is not None else None
        fitted = {"best_epoch": None, "epochs_run": sum(r.epochs_run for r in results), "best_val_cosine": val,
                  "train_seconds": round(sum(r.seconds for r in results), 2), "seconds_per_epoch": None,
                  "seconds_to_best": None, "resumed_from_epoch": None,
                  "members": [{"model": m.name, **_fit_summary(r, kept_rows)}
                              for m, r, kept_rows in zip(members, results, remembered)]}
    weights = backbone.weights
    if config.backbone.weights not in (None, "DEFAULT") and os.path.isfile(str(config.backbone.weights)):
        from kgzsl.training.checkpoint import BACKBONE_COPY
        from kgzsl.vision.backbones import file_weights

        # your own weights file: the run keeps a copy, which it loads from then on (file_weights names it
        # by content, so the copy and the file it came from are the same weights)
        # nothing of the source's path in the file: the same weights give the same bytes, so runs share indexes
        save_tensors(out / BACKBONE_COPY, backbone.full_state_dict(), metadata={"backbone": backbone.name})
        weights = file_weights(out / BACKBONE_COPY)
    summary: dict[str, Any] = {
        "name": config.name, "model": model.name, "backbone": backbone.name, "graph": str(Path(graph.path).absolute()),
        "graph_counts": graph.manifest.get("counts", {}), "num_nodes": graph.num_nodes,
        "seen": len(present), "train": tr.numel(), "val": va.numel(), "holdout": sorted(hidden), **fitted,
        "total_seconds": round(time.perf_counter() - start, 2), "device": str(device), "seed": config.train.seed,
        "backbone_weights": weights, **({"backbone_weights_source": backbone.weights} if weights != backbone.weights
                                        else {}),
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(), "config": config_to_dict(config),
    }
    write_json(out / "run.json", summary)
    for checkpoint in checkpoints:  # the run is complete: nothing left to resume
        checkpoint.unlink(missing_ok=True)
    logger.info("wrote run %s", out)
    return out
