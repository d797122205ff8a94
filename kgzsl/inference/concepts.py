"""New concepts without retraining: extend the graph, run the trained model inductively.

A concept is either a WordNet noun that is not in the run's graph (its synset is attached with every
missing hypernym on its way up to a node the graph has), or a word WordNet does not know (a new
node ``x:<word>`` under the parents the caller names, its text feature taken from a description).
The trained propagation model, loaded from ``model.safetensors`` (its name and hyper-parameters are
in the file's header), then runs in eval mode over the extended graph for the new rows only; the
rows of the existing nodes and every weight stay as they are.

Example:
    >>> clf = ZeroShotClassifier.load("runs/dgp")
    >>> clf.add_concept("okapi")
    >>> clf.add_concept("e-scooter", parents=["motor scooter"], description="a standing scooter with an electric motor")
    >>> clf.predict("street.jpg", ["okapi", "e-scooter", "bicycle"])
    >>> clf.save_concepts("concepts.yaml")   # reload with load_concepts(clf, "concepts.yaml")
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kgzsl.errors import NotFoundError
from kgzsl.inference.concept_nodes import (SYNSET_RE, WNID_RE, AmbiguousConceptError, ConceptError, NodeExtension,
                                 custom_id, pick_synset, resolve_parent)
from kgzsl.utils.io import load_tensors, read_tensor_metadata, write_text
from kgzsl.inference.labels import ResolvedLabel

__all__ = ["ConceptError", "AmbiguousConceptError", "ConceptState", "add_concept", "concept_graph",
           "save_concepts", "load_concepts", "load_propagation_model"]

logger = logging.getLogger(__name__)


@dataclass
class ConceptState:
    """What a classifier needs to add concepts: the (extended) graph, its node features, the model.

    Attributes:
        graph: The run's graph plus every node added so far, in row order.
        x: ``[N, F]`` node features of ``graph``.
        model: The trained propagation model, in eval mode on the CPU.
        text_spec: ``(encoder spec, use_gloss)`` of the run's config.
        added: The concept specs added, in order (what :func:`save_concepts` writes).
    """

    graph: Any
    x: torch.Tensor
    model: Any
    text_spec: tuple[str, bool]
    added: list[dict[str, Any]] = field(default_factory=list)


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


def _run_graph(run_dir: Path, summary: dict[str, Any]) -> Any:
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


def _run_features(run_dir: Path, graph: Any, spec: tuple[str, bool]) -> torch.Tensor:
    """The run's stored node features; for older runs recomputed (and cached beside the graph)."""
    from kgzsl.text.features import node_features

    file = run_dir / "node_features.safetensors"
    if file.is_file():
        x = load_tensors(file).get("features")
        if x is not None and x.ndim == 2 and x.size(0) == graph.num_nodes:
            return x
        logger.warning("%s does not hold [%d, F] node features: recomputing them", file, graph.num_nodes)
    return node_features(graph, encoder=spec[0], use_gloss=spec[1])


def concept_graph(clf: Any) -> ConceptState:
    """The classifier's concept state, loading the run's graph, features and model on first use.

    Everything comes from the run folder (a run copied anywhere works without its graph folder);
    runs written before runs carried their graph fall back to the graph folder ``run.json`` records.

    Raises:
        ConceptError: If the run carries no graph and the recorded graph folder is gone, or the
            graph no longer matches the run's nodes.
    """
    if clf.concepts is not None:
        return clf.concepts
    summary = clf.summary or {}
    run_dir = clf.run_dir
    if run_dir is None or not summary:
        raise ConceptError("concepts need a classifier loaded from a run folder (ZeroShotClassifier.load)")
    run_dir = Path(run_dir)
    graph = _run_graph(run_dir, summary)
    base = len(clf.wnids) - len(clf.added_wnids)
    if graph.wnids != clf.wnids[:base]:
        raise ConceptError(f"graph {graph.path} no longer matches the run's nodes.tsv; rebuild the graph the run "
                           "was trained on")
    features = (summary.get("config") or {}).get("features") or {}
    spec = (str(features.get("encoder", "minilm")), bool(features.get("gloss", False)))
    x = _run_features(run_dir, graph, spec)
    state = ConceptState(graph=graph, x=x, model=load_propagation_model(run_dir), text_spec=spec)
    clf.attach_concepts(state)
    return state


def add_concept(clf: Any, word_or_wnid: str, parents: Sequence[str] | str | None = None,
                description: str | None = None, sense: str | None = None) -> ResolvedLabel:
    """Add a concept to a loaded classifier and predict its row with the trained model (no weight changes).

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier` loaded from a run folder.
        word_or_wnid: A word (``"okapi"``, ``"e-scooter"``), a synset name or a wnid.
        parents: For a word WordNet does not know: the nodes it hangs under (words, synset names or
            wnids; WordNet nouns missing from the graph are attached too). Ignored for WordNet nouns.
        description: Text the new node's feature is computed from (``"word: description"``); the
            word alone when None. For WordNet nouns the usual node text (lemmas, gloss per config) is used.
        sense: For ambiguous words: the synset name or wnid meant.

    Returns:
        The concept resolved to its node (an existing one if the graph has it already).

    Raises:
        AmbiguousConceptError: If the word has several noun senses; it lists them with glosses.
        ConceptError: If an unknown word has no parents, or a parent cannot be resolved.
    """
    from kgzsl.text.features import get_encoder, node_texts
    from kgzsl.graph.wordnet import load_wordnet, wnid_of

    word = str(word_or_wnid).strip()
    if not word:
        raise ConceptError("empty concept: give a word, a synset name or a wnid")
    if not sense and (word in clf.resolver.index or word in clf.resolver.by_name):
        return clf.resolver.resolve(word)
    state = concept_graph(clf)
    try:
        wn = load_wordnet()
    except Exception as exc:  # WordNet missing: only custom nodes under known parents can be added
        logger.warning("WordNet unavailable (%s); %r is added as a custom node", exc, word)
        wn = None
    ext = NodeExtension(state.graph)
    synset = pick_synset(wn, word, sense, set(ext.index)) if wn is not None else None
    if synset is not None:
        if wnid_of(synset) in ext.index:
            return replace(clf.resolver.resolve(wnid_of(synset)), label=word)
        node = ext.add_synset(synset)
    else:
        if WNID_RE.match(word) or SYNSET_RE.match(word):
            raise ConceptError(f"{word!r} names no WordNet noun synset")
        wanted = [parents] if isinstance(parents, str) else list(parents or [])
        if not wanted:
            raise ConceptError(f"{word!r} is not a WordNet noun: say where it belongs with parents=[...] "
                               "(words, synset names or wnids of the graph), e.g. parents=['scooter']",
                               cli_message=f"{word!r} is not a WordNet noun: say where it belongs with --parents "
                               "(comma-separated words, synset names or wnids of the graph; in a --concept-file: "
                               "'parents:'), e.g. --parents scooter")
        wnid = custom_id(word)
        if wnid in ext.index:
            return clf.resolver.resolve(wnid)
        ups = [resolve_parent(clf, ext, wn, p) for p in wanted]
        clean = " ".join(word.replace("_", " ").split())
        text = f"{clean}: {description.strip()}" if description and description.strip() else clean
        node = ext.add(wnid, wnid, ["_".join(clean.split())], (description or "").strip(), text=text)
        rel = state.graph.relations.index("hypernym") if "hypernym" in state.graph.relations else 0
        ext.edges += [(node, p, rel) for p in dict.fromkeys(ups)]

    n, k = state.graph.num_nodes, len(ext.wnids)
    # new nodes only hang below the old ones: only their ancestors are searched
    graph = state.graph.extended(ext.wnids, ext.names, ext.lemmas, ext.glosses, ext.edges)

    encoder, use_gloss = state.text_spec
    usual = node_texts(ext.lemmas, ext.glosses, use_gloss)
    texts = [t if t is not None else u for t, u in zip(ext.texts, usual)]
    x_new = F.normalize(torch.nan_to_num(get_encoder(encoder).encode(texts).float().cpu()), dim=1)
    x = torch.cat([state.x, x_new])
    new_rows = torch.arange(n, n + k)
    with torch.no_grad():
        rows = state.model.predict_rows(x, state.model.operators(graph), rows=new_rows)

    state.graph, state.x = graph, x
    state.added.append({"name": word, "parents": list(parents) if isinstance(parents, (list, tuple)) else
                        ([parents] if parents else []), "description": description, "sense": sense})
    clf.extend(rows, ext.wnids, ext.names, ext.lemmas)
    logger.info("added concept %r: %d new node(s) %s", word, k, ", ".join(ext.names))
    return replace(clf.resolver.resolve(graph.wnids[node]), label=word)


def save_concepts(clf: Any, path: str | Path) -> Path:
    """Write the concepts added to ``clf`` as a YAML list of ``{name, parents, description, sense}`` (atomically)."""
    import yaml

    added = clf.concepts.added if clf.concepts is not None else []
    path = Path(path)
    write_text(path, yaml.safe_dump(added, sort_keys=False, allow_unicode=True))
    return path


def load_concepts(clf: Any, path: str | Path) -> list[ResolvedLabel]:
    """Add every concept of a YAML concept file (see :func:`save_concepts`) to ``clf``, in order.

    Raises:
        kgzsl.errors.NotFoundError: If the file does not exist.
        ConceptError: If the file is not a list of concept entries.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"concept file not found: {path}")
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConceptError(f"{path} is not valid YAML ({exc})") from None
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConceptError(f"{path} must hold a list of concepts ({{name, parents, description, sense}})")
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ConceptError(f"{path}: entry {i + 1} needs a 'name'")
        unknown = set(entry) - {"name", "parents", "description", "sense"}
        if unknown:
            raise ConceptError(f"{path}: entry {i + 1} has unknown keys {sorted(unknown)}")
        out.append(add_concept(clf, str(entry["name"]), entry.get("parents"), entry.get("description"),
                               entry.get("sense")))
    return out
