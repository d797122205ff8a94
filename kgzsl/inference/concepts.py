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
from kgzsl.graph.knowledge_graph import ancestor_pairs
from kgzsl.utils.io import load_tensors, read_tensor_metadata, write_text
from kgzsl.inference.labels import LabelResolver, ResolvedLabel

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
    from kgzsl.models import build_model

    path = Path(run_dir) / "model.safetensors"
    meta = read_tensor_metadata(path)
    if "model" not in meta or "hparams" not in meta:
        raise ConceptError(f"{path} does not record its model name and hyper-parameters; retrain the run")
    hparams = dict(json.loads(meta["hparams"]))
    model = build_model(meta["model"], hparams.pop("in_channels"), hparams.pop("out_channels"), **hparams)
    model.load_state_dict(load_tensors(path))
    return model.eval()


def concept_graph(clf: Any) -> ConceptState:
    """The classifier's concept state, loading the run's graph, features and model on first use.

    Raises:
        ConceptError: If the run's graph folder is gone or no longer matches the run's nodes.
    """
    state = getattr(clf, "_concept_state", None)
    if state is not None:
        return state
    from kgzsl.text.features import node_features
    from kgzsl.graph import KnowledgeGraph

    summary = getattr(clf, "summary", None) or {}
    run_dir = getattr(clf, "run_dir", None)
    if run_dir is None or not summary.get("graph"):
        raise ConceptError("concepts need a classifier loaded from a run folder (ZeroShotClassifier.load)")
    graph_dir = Path(summary["graph"])
    if not (graph_dir / "manifest.json").is_file():
        raise ConceptError(f"the run's graph folder {graph_dir} is missing; rebuild it with `kgzsl build-graph` "
                           "(same wnids) at that path")
    graph = KnowledgeGraph.load(graph_dir)
    base = len(clf.wnids) - len(getattr(clf, "_added_wnids", []))
    if graph.wnids != clf.wnids[:base]:
        raise ConceptError(f"graph {graph_dir} no longer matches the run's nodes.tsv; rebuild the graph the run "
                           "was trained on")
    features = (summary.get("config") or {}).get("features") or {}
    spec = (str(features.get("encoder", "minilm")), bool(features.get("gloss", False)))
    x = node_features(graph, encoder=spec[0], use_gloss=spec[1])
    state = ConceptState(graph=graph, x=x, model=load_propagation_model(run_dir), text_spec=spec)
    clf._concept_state = state
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
    from kgzsl.graph import KnowledgeGraph
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

    old = state.graph
    n, k = old.num_nodes, len(ext.wnids)
    weights = None if old.weights is None else list(old.weights) + [1.0] * len(ext.edges)
    graph = KnowledgeGraph(wnids=old.wnids + ext.wnids, names=old.names + ext.names,
                           lemmas=old.lemmas + ext.lemmas, glosses=old.glosses + ext.glosses,
                           edges=old.edges + ext.edges, manifest=dict(old.manifest), path=None,
                           relations=list(old.relations), weights=weights)
    # the old nodes' ancestors are unchanged (new nodes only hang below them): only the new ones are searched
    pairs = ancestor_pairs(graph.parents, range(n, n + k))
    index, dist = old.ancestor_index()
    if pairs:
        t = torch.tensor(pairs, dtype=torch.long)
        index, dist = torch.cat([index, t[:, :2].T], 1), torch.cat([dist, t[:, 2]])
    graph._stored_ancestors = (index.contiguous(), dist.contiguous())

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
    clf.rows = torch.cat([clf.rows, rows.to(clf.rows.device, clf.rows.dtype)])
    clf.wnids += ext.wnids
    clf.names += ext.names
    clf.lemmas += [list(ls) for ls in ext.lemmas]
    clf._added_wnids = getattr(clf, "_added_wnids", []) + ext.wnids
    clf.resolver = LabelResolver(clf.wnids, clf.names, clf.lemmas, wordnet=load_wordnet)
    clf._heads.clear()
    logger.info("added concept %r: %d new node(s) %s", word, k, ", ".join(ext.names))
    return replace(clf.resolver.resolve(graph.wnids[node]), label=word)


def save_concepts(clf: Any, path: str | Path) -> Path:
    """Write the concepts added to ``clf`` as a YAML list of ``{name, parents, description, sense}`` (atomically)."""
    import yaml

    state = getattr(clf, "_concept_state", None)
    added = state.added if state is not None else []
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
