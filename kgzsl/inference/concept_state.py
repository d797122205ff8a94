"""The state that adding concepts needs: the run's graph, node features and trained model.

A classifier loaded from a run folder adds concepts (:mod:`kgzsl.inference.concepts`) by running
the run's own propagation model over its own graph, extended. Everything comes from the run folder,
so a run copied anywhere works without its graph folder: ``edges.tsv`` and ``manifest.json`` (the
graph), ``node_features.safetensors`` and ``model.safetensors`` (its name and hyper-parameters in
the header). :func:`concept_graph` loads them the first time a concept is added, and joins the
concepts stored in the run (:mod:`kgzsl.inference.concept_store`) to the graph.

Example:
    >>> state = concept_graph(clf)          # loaded once, then kept by the classifier
    >>> state.graph.num_nodes, state.x.shape, state.model
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgzsl.inference.concept_nodes import ConceptError
from kgzsl.utils.io import load_tensors, read_tensor_metadata

__all__ = ["ConceptState", "StoredConcepts", "concept_graph", "load_propagation_model", "run_features", "run_graph",
           "run_text_spec"]

logger = logging.getLogger(__name__)


@dataclass
class StoredConcepts:
    """Added nodes as a run folder stores them: enough to rebuild the extended graph without any encoding.

    Attributes:
        wnids: Node ids, in row order after the run's nodes.
        names: Synset names (the id for your own classes).
        lemmas: Lemma names per node.
        glosses: Glosses per node.
        edges: ``(child id, parent id, relation name)`` of every edge added.
        features: ``[K, F]`` node features of the added nodes.
    """

    wnids: list[str]
    names: list[str]
    lemmas: list[list[str]]
    glosses: list[str]
    edges: list[tuple[str, str, str]]
    features: torch.Tensor


@dataclass
class ConceptState:
    """What a classifier needs to add concepts: the (extended) graph, its node features, the model.

    A run loaded with stored concepts starts with ``graph``, ``x`` and ``model`` None and the added
    nodes in ``pending``; :func:`concept_graph` loads the rest the first time it is needed.

    Attributes:
        graph: The run's graph plus every node added so far, in row order.
        x: ``[N, F]`` node features of ``graph``.
        model: The trained propagation model, in eval mode on the CPU.
        text_spec: ``(encoder spec, use_gloss)`` of the run's config.
        added: The concept specs added, in order (what :func:`save_concepts` writes).
        pending: Stored added nodes not yet joined to ``graph``.
    """

    graph: Any
    x: torch.Tensor | None
    model: Any
    text_spec: tuple[str, bool]
    added: list[dict[str, Any]] = field(default_factory=list)
    pending: StoredConcepts | None = None


def load_propagation_model(run_dir: str | Path) -> Any:
    """Rebuild the run's propagation model from ``model.safetensors`` (name + hparams in its header), eval mode."""
    from kgzsl.models import rebuild_model

    path = Path(run_dir) / "model.safetensors"
    meta = read_tensor_metadata(path)
    if "model" not in meta or "hparams" not in meta:
        raise ConceptError(f"{path} does not record its model name and hyper-parameters; retrain the run")
    model = rebuild_model(meta["model"], dict(json.loads(meta["hparams"])))
    model.load_state_dict(load_tensors(path))
    return model.eval()


def run_graph(run_dir: Path, summary: dict[str, Any]) -> Any:
    """The graph a run was trained on: its own copy, else (runs from before the copy) the recorded graph folder."""
    from kgzsl.graph import KnowledgeGraph, build_command

    if (run_dir / "edges.tsv").is_file() and (run_dir / "manifest.json").is_file():
        return KnowledgeGraph.load(run_dir)  # nodes.tsv + edges.tsv + ancestors.tsv + manifest.json
    recorded = summary.get("graph")
    if recorded and (Path(recorded) / "manifest.json").is_file():
        logger.info("run %s carries no copy of its graph (trained by an older kgzsl): using %s", run_dir, recorded)
        return KnowledgeGraph.load(recorded)
    wnids = ((summary.get("config") or {}).get("graph") or {}).get("wnids") or "imagenet1k,imagenet21k"
    where = f"the graph folder it records, {recorded}, is missing" if recorded else "it records no graph folder"
    raise ConceptError(f"run {run_dir} carries no copy of its graph (trained by an older kgzsl) and {where}; "
                       f"retrain the run, or rebuild the graph with `{build_command(recorded or 'GRAPH', wnids)}`")


def run_features(run_dir: Path, graph: Any, spec: tuple[str, bool]) -> torch.Tensor:
    """The run's stored node features; for older runs recomputed (and cached beside the graph)."""
    from kgzsl.text.features import node_features

    file = run_dir / "node_features.safetensors"
    if file.is_file():
        x = load_tensors(file).get("features")
        if x is not None and x.ndim == 2 and x.size(0) == graph.num_nodes:
            return x
        logger.warning("%s does not hold [%d, F] node features: recomputing them", file, graph.num_nodes)
    return node_features(graph, encoder=spec[0], use_gloss=spec[1])


def run_text_spec(summary: dict[str, Any]) -> tuple[str, bool]:
    """``(text encoder spec, use_gloss)`` of a run's config (``run.json``)."""
    features = (summary.get("config") or {}).get("features") or {}
    return str(features.get("encoder", "minilm")), bool(features.get("gloss", False))


def concept_graph(clf: Any) -> ConceptState:
    """The classifier's concept state, loading the run's graph, features and model on first use.

    Everything comes from the run folder (a run copied anywhere works without its graph folder);
    runs written before runs carried their graph fall back to the graph folder ``run.json`` records.
    Stored concepts (:mod:`kgzsl.inference.concept_store`) are joined to the graph here.

    Threads share the first load: it holds the classifier's ``concept_lock``.

    Raises:
        ConceptError: If the run carries no graph and the recorded graph folder is gone, or the
            graph no longer matches the run's nodes.
    """
    with clf.concept_lock:
        return _load_state(clf)


def _load_state(clf: Any) -> ConceptState:
    """:func:`concept_graph`'s work, under the classifier's ``concept_lock``."""
    state = clf.concepts
    if state is not None and state.model is not None:
        return state
    summary = clf.summary or {}
    run_dir = clf.run_dir
    if run_dir is None or not summary:
        raise ConceptError("concepts need a classifier loaded from a run folder (ZeroShotClassifier.load)")
    run_dir = Path(run_dir)
    graph = run_graph(run_dir, summary)
    base = len(clf.wnids) - len(clf.added_wnids)
    if graph.wnids != clf.wnids[:base]:
        raise ConceptError(f"graph {graph.path} no longer matches the run's nodes.tsv; rebuild the graph the run "
                           "was trained on")
    spec = run_text_spec(summary)
    x = run_features(run_dir, graph, spec)
    model = load_propagation_model(run_dir)
    if state is None:
        state = ConceptState(graph=graph, x=x, model=model, text_spec=spec)
        clf.attach_concepts(state)
        return state
    stored = state.pending
    if stored is not None:
        index = dict(graph.index)
        index.update({w: len(graph.wnids) + i for i, w in enumerate(stored.wnids)})
        rel = {r: i for i, r in enumerate(graph.relations)}
        edges = [(index[c], index[p], rel.get(r, 0)) for c, p, r in stored.edges]
        graph = graph.extended(stored.wnids, stored.names, stored.lemmas, stored.glosses, edges)
        x = torch.cat([x, stored.features.to(x.dtype)])
    state.graph, state.x, state.model, state.pending = graph, x, model, None
    return state
