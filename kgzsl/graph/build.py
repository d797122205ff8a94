"""Build a :class:`KnowledgeGraph` from lists of wnids over WordNet 3.0.

The graph holds the requested synsets and every hypernym and instance-hypernym ancestor up to
``entity.n.01``, so it is one connected graph (the reference code cut its ancestor search at
ImageNet's structure file, which isolated test classes; kgzsl does not).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shlex
import time
from pathlib import Path
from typing import Any, Iterable

from kgzsl.errors import InputError, NotFoundError
from kgzsl.graph.graph_folder import RELATIONS
from kgzsl.graph.knowledge_graph import KnowledgeGraph
from kgzsl.graph.taxonomy import (TaxonomyEntry, TaxonomyError, by_label, check_parents, custom_id, label_key,
                                  noun_senses, topological_order, wordnet_collisions)
from kgzsl.graph.wordnet import WNID_RE, hypernym_closure, load_wordnet, synset_from_wnid, wnid_of
from kgzsl.utils.paths import graph_data_dir, resolve_graph_dir, shipped_names

__all__ = ["graph_data_dir", "resolve_graph_dir", "named_wnid_sets", "read_wnid_list", "resolve_wnids",
           "build_wordnet_graph", "build_taxonomy_graph", "load_graph", "load_or_build_graph", "build_command", "GraphNotFoundError",
           "DEFAULT_GRAPH", "DEFAULT_WNIDS"]

logger = logging.getLogger(__name__)

DEFAULT_GRAPH = "imagenet1k_21k"
DEFAULT_WNIDS = "imagenet1k,imagenet21k"


class GraphNotFoundError(NotFoundError):
    """A graph name or path names no built graph; the message gives the ``kgzsl build-graph`` command."""


def named_wnid_sets() -> dict[str, Path]:
    """Named wnid lists shipped with kgzsl (``imagenet1k``, ``imagenet21k``, ``2-hops``, ...).

    They are ``graph_data/wnids/*.txt`` of a checkout, or the same files inside an installed wheel
    (see :func:`kgzsl.utils.paths.shipped_dir`).
    """
    return shipped_names("wnids")


def read_wnid_list(path: str | os.PathLike) -> list[str]:
    """Read wnids from a text file: the first whitespace-separated token of each non-comment line.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file holds no wnid, or a line starts with something else.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"wnid list not found: {path}")
    wnids, bad = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            token = line.split()[0]
            if WNID_RE.match(token):
                wnids.append(token)
            else:
                bad.append(f"line {number}: {token!r}")
    if bad:
        listed = "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise InputError(f"{path} is not a wnid list ({listed}): give one wnid per line, e.g. n02084071 (a taxonomy "
                         "file goes to `kgzsl build-graph --taxonomy` or `kgzsl add-concept --file`)")
    if not wnids:
        raise InputError(f"{path} holds no wnid (one per line, e.g. n02084071)")
    return wnids


def resolve_wnids(spec: str | Iterable[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Resolve ``NAME_OR_FILE[,NAME_OR_FILE...]`` into one de-duplicated, ordered wnid list.

    Args:
        spec: Comma-separated names of shipped sets or paths to wnid files (or a list of them).

    Returns:
        ``(wnids, sources)``: the wnids in first-seen order, and one record per source
        (name, path, count, sha256) for the manifest.

    Raises:
        ValueError: If a part is neither a shipped set nor an existing file.
    """
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    if not parts:
        raise InputError("no wnid list given; name a shipped set or a file")
    named = named_wnid_sets()
    wnids: dict[str, None] = {}
    sources = []
    for part in parts:
        path = named.get(part) or Path(part)
        if not path.is_file():
            raise InputError(f"wnid list {part!r} is neither a shipped set ({', '.join(named) or 'none found'}) "
                             "nor an existing file")
        items = read_wnid_list(path)
        sources.append({"name": part, "path": str(path), "count": len(items),
                        "sha256": hashlib.sha256("\n".join(items).encode()).hexdigest()})
        wnids.update(dict.fromkeys(items))
    return list(wnids), sources


def build_wordnet_graph(wnids: Iterable[str], sources: list[dict[str, Any]] | None = None,
                        wordnet_dir: str | None = None) -> KnowledgeGraph:
    """Build the graph of ``wnids`` plus all their hypernym / instance-hypernym ancestors.

    Args:
        wnids: Class wnids; they come first in the node order, ancestors follow breadth-first.
        sources: Source records for the manifest (from :func:`resolve_wnids`).
        wordnet_dir: Optional WordNet folder (see :func:`kgzsl.graph.wordnet.load_wordnet`).

    Returns:
        The in-memory graph (save it with :meth:`KnowledgeGraph.save`).

    Raises:
        ValueError: Listing every wnid that is not a WordNet 3.0 noun synset.
    """
    wn = load_wordnet(wordnet_dir)
    start = time.perf_counter()
    requested = list(dict.fromkeys(wnids))
    synsets, bad = [], []
    for w in requested:
        try:
            synsets.append(synset_from_wnid(wn, w))
        except ValueError as exc:
            bad.append(str(exc))
    if bad:
        shown = "\n  ".join(bad[:10])
        raise InputError(f"{len(bad)} of {len(requested)} wnids are not WordNet 3.0 noun synsets:\n  {shown}"
                         + ("\n  ..." if len(bad) > 10 else ""))
    ancestors, named_edges = hypernym_closure(synsets, {wnid_of(s): i for i, s in enumerate(synsets)})
    nodes = synsets + ancestors
    edges = [(child, parent, RELATIONS.index(rel)) for child, parent, rel in named_edges]
    graph = KnowledgeGraph(
        wnids=[wnid_of(s) for s in nodes], names=[s.name() for s in nodes],
        lemmas=[s.lemma_names() for s in nodes], glosses=[s.definition() for s in nodes], edges=edges)
    index_t, dist = graph.ancestor_index()
    seconds = time.perf_counter() - start
    from kgzsl._version import __version__

    graph.manifest = {
        "kgzsl_version": __version__,
        "source": "wordnet",
        "wordnet_version": wn.get_version(),
        "sources": sources or [],
        "build": {"ancestors": "hypernyms + instance_hypernyms, to the root", "python": platform.python_version()},
        "counts": {"requested": len(requested), "nodes": graph.num_nodes, "edges": len(edges),
                   "instance_edges": sum(1 for e in edges if e[2] == 1), "ancestor_pairs": int(dist.numel()),
                   "roots": len(graph.subgraph_roots()), "max_depth": int(dist.max()) if dist.numel() else 0},
        "build_seconds": round(seconds, 3),
    }
    logger.info("built graph: %d nodes, %d edges from %d wnids in %.2fs", graph.num_nodes, len(edges),
                len(requested), seconds)
    return graph


def _one_sense(wn: Any, text: str) -> tuple[Any, str | None]:
    """``(synset, None)`` for a WordNet noun with one meaning (or a synset name / wnid), else ``(None, why)``."""
    try:
        senses = noun_senses(wn, text)
    except InputError as exc:
        return None, str(exc)
    if not senses:
        return None, "neither another entry's name nor a WordNet noun; check the spelling, or give a synset name"
    if len(senses) > 1:
        listed = "; ".join(f"{s.name()} ({s.definition()})" for s in senses[:6])
        return None, f"ambiguous WordNet noun: {listed}; write the synset name you mean"
    return senses[0], None


def build_taxonomy_graph(entries: list[TaxonomyEntry], wnids: Iterable[str] = (),
                         sources: list[dict[str, Any]] | None = None, wordnet_dir: str | None = None,
                         taxonomy_source: dict[str, Any] | None = None) -> KnowledgeGraph:
    """The WordNet graph of ``wnids`` and the taxonomy's WordNet parents, with your classes below them.

    Every parent is checked before anything is built: another entry's name or alias, or a WordNet
    noun with one meaning, a synset name or a wnid. An entry without parents is a WordNet noun (its
    ``sense`` for an ambiguous word). Your classes get the ids ``x:<name>``, their name and aliases as
    lemma names and their description as gloss; they come after the WordNet nodes.

    Args:
        entries: Checked entries (:func:`kgzsl.graph.taxonomy_files.read_taxonomy`).
        wnids: More classes (e.g. ImageNet-1k, the seen classes training needs).
        sources: Source records of ``wnids`` for the manifest.
        wordnet_dir: Optional WordNet folder.
        taxonomy_source: What to record about the taxonomy file in the manifest (path, sha256).

    Raises:
        TaxonomyError: One line per unknown or ambiguous parent or entry, naming the entry and line.
    """
    wn = load_wordnet(wordnet_dir)
    entries = topological_order(entries)
    check_parents(entries, lambda p: _one_sense(wn, p)[1])
    problems, extra = [], []
    for e in entries:
        if not e.parents:
            synset, why = _one_sense(wn, e.sense or e.name)
            if why:
                problems.append(f"{e.where}: entry {e.name!r}: {why}" + ("" if e.sense else
                                "; a class of your own needs 'parents'"))
            else:
                extra.append(wnid_of(synset))
        else:
            extra += [wnid_of(_one_sense(wn, p)[0]) for p in e.parents if label_key(p) not in by_label(entries)]
    if problems:
        raise TaxonomyError("\n".join(["the taxonomy has problems; nothing was built:"] + problems))
    wordnet_collisions(wn, entries)
    base = build_wordnet_graph(list(wnids) + extra, sources, wordnet_dir)
    own = [e for e in entries if e.parents]
    ids = {label_key(t): custom_id(e.name) for e in own for t in (e.name, *e.aliases)}
    index = dict(base.index)
    for e in own:
        index[custom_id(e.name)] = len(index)
    edges = []
    for e in own:
        for p in e.parents:
            target = ids.get(label_key(p)) or wnid_of(_one_sense(wn, p)[0])
            edges.append((index[custom_id(e.name)], index[target], 0))
    graph = base.extended([custom_id(e.name) for e in own], [custom_id(e.name) for e in own],
                          [["_".join(t.split()) for t in (e.name, *e.aliases)] for e in own],
                          [e.description or "" for e in own], list(dict.fromkeys(edges)))
    _, dist = graph.ancestor_index()
    counts = dict(base.manifest["counts"], nodes=graph.num_nodes, edges=len(graph.edges), ancestor_pairs=int(dist.numel()),
                  taxonomy_classes=len(own), max_depth=int(dist.max()) if dist.numel() else 0)
    graph.manifest = dict(base.manifest, counts=counts, taxonomy=dict(taxonomy_source or {}, entries=len(entries)))
    logger.info("taxonomy graph: %d WordNet nodes + %d classes of your own", base.num_nodes, len(own))
    return graph


def build_command(spec: str | os.PathLike, wnids: str = DEFAULT_WNIDS) -> str:
    """The ``kgzsl build-graph`` command that writes the graph ``spec`` stands for (same resolution rule)."""
    return f"kgzsl build-graph --wnids {shlex.quote(wnids)} --out {shlex.quote(os.fspath(spec))}"


def load_graph(spec: str | os.PathLike, wnids: str = DEFAULT_WNIDS) -> KnowledgeGraph:
    """Load a built graph by name or path (:func:`kgzsl.utils.paths.resolve_graph_dir` says where).

    Args:
        spec: A bare graph name (a folder of the graph data folder) or a path.
        wnids: The wnid lists the graph is built from; only used in the error message.

    Raises:
        GraphNotFoundError: If no graph is there; the message names the command that builds it.
        kgzsl.graph.GraphFormatError: If the folder holds a broken or outdated graph.
    """
    path = resolve_graph_dir(spec)
    if not (path / "manifest.json").is_file():
        raise GraphNotFoundError(f"no graph at {path} (graph {os.fspath(spec)!r}); build it first with: "
                                 f"{build_command(spec, wnids)}")
    return KnowledgeGraph.load(path)


def load_or_build_graph(spec: str | os.PathLike, wnids: str = DEFAULT_WNIDS) -> KnowledgeGraph:
    """Load the graph ``spec`` stands for, or build it from ``wnids`` and save it there (logged).

    Only commands whose job is to set everything up (``kgzsl demo``, benchmarks) call this; the
    others use :func:`load_graph`, which fails with the build command instead of building.
    """
    path = resolve_graph_dir(spec)
    if (path / "manifest.json").is_file():
        return KnowledgeGraph.load(path)
    logger.info("graph %s not found: building it from %s (as `%s` would)", path, wnids, build_command(spec, wnids))
    ids, sources = resolve_wnids(wnids)
    graph = build_wordnet_graph(ids, sources)
    graph.save(path)
    return graph
