"""ConceptNet class graphs: the 2-hop neighbourhood of the class concepts (ZSL-KG), and merging with WordNet.

:func:`build_conceptnet_graph` reads the assertions dump once (:func:`iter_assertions`), keeping the
English-to-English assertions in compact arrays (node ids interned: memory grows with the English
subgraph, ~3.4 M assertions in 5.7, not with the 34 M-line file). Assertions that coincide once
their concepts are mapped to nodes (:class:`ConceptMapper`) are summed into one typed edge. It then
keeps, per the ZSL-KG recipe, for each class node its top ``k1`` neighbours and for each of those
its top ``k2`` neighbours, ranked by random-walk hitting probability (:func:`rank_neighbours`).

Example:
    >>> classes = classes_from_wordnet(["n02439398", "n02391049"])  # doctest: +SKIP
    >>> graph = build_conceptnet_graph("conceptnet-assertions-5.7.0.csv.gz", classes)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import platform
import time
from array import array
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from kgzsl.errors import InputError, NotFoundError
from kgzsl.graph.conceptnet_reader import (Assertion, ConceptClass, ConceptMapper, ReadStats, classes_from_wordnet,
                                           concept_terms, iter_assertions)
from kgzsl.graph.knowledge_graph import KnowledgeGraph

__all__ = ["build_conceptnet_graph", "build_source_graph", "merge_graphs", "rank_neighbours", "iter_assertions",
           "ConceptClass", "ConceptMapper", "ReadStats", "Assertion", "classes_from_wordnet", "concept_terms",
           "DEFAULT_TOPK", "SOURCES"]

logger = logging.getLogger(__name__)

DEFAULT_TOPK = (100, 50)  # ZSL-KG's neighbours per node at hop 1 and hop 2 (AwA2 setting)
SOURCES = ("wordnet", "conceptnet", "wordnet+conceptnet")


def _csr(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """Undirected weighted adjacency in CSR form (parallel edges summed): ``rowptr, col, weight``."""
    row, col, w = torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([weight, weight]).double()
    key, inv = torch.unique(row * n + col, return_inverse=True)
    w = torch.zeros(key.numel(), dtype=torch.float64).index_add_(0, inv, w)
    row, col = key // n, key % n
    rowptr = torch.zeros(n + 1, dtype=torch.long)
    rowptr[1:] = torch.bincount(row, minlength=n).cumsum(0)
    return rowptr, col, w


def rank_neighbours(rowptr: torch.Tensor, col: torch.Tensor, weight: torch.Tensor, frontier: torch.Tensor,
                    k: int, num_walks: int = 200, walk_length: int = 10, restart: float = 0.5,
                    generator: torch.Generator | None = None, max_walkers: int = 1 << 20) -> torch.Tensor:
    """Each frontier node's top-``k`` direct neighbours by random-walk hitting probability.

    A cheap Monte-Carlo version of ZSL-KG's ranking: from each frontier node ``i`` that has more
    than ``k`` neighbours, ``num_walks`` walks of ``walk_length`` steps move to a neighbour with
    probability proportional to the edge weight and jump back to ``i`` with probability
    ``restart`` after each step. A neighbour's score is its share of the visits (an estimate of
    the random walk with restart's visiting probability); ties, and nodes with at most ``k``
    neighbours, are decided by edge weight, then node index. All walkers of a batch move at once
    (vectorised sampling by binary search on cumulative weights).

    Args:
        rowptr, col, weight: Undirected weighted adjacency in CSR form (weights > 0).
        frontier: ``[F]`` node indices to rank the neighbours of.
        k: Neighbours kept per node.
        num_walks, walk_length, restart: Walks per node, steps per walk, restart probability.
        generator: Random generator (seed it for reproducible graphs).
        max_walkers: Walkers moved at once (bounds memory).

    Returns:
        ``[2, M]`` (frontier node, kept neighbour) pairs.
    """
    frontier = torch.unique(frontier)
    deg = rowptr[frontier + 1] - rowptr[frontier]
    seg = torch.repeat_interleave(torch.arange(frontier.numel()), deg)  # candidate → frontier position
    first = deg.cumsum(0) - deg  # first candidate of each frontier node
    entry = rowptr[frontier][seg] + torch.arange(seg.numel()) - first[seg]
    cand, cand_w = col[entry], weight[entry]
    n = rowptr.numel() - 1
    score = torch.zeros(seg.numel(), dtype=torch.float64)
    walked = (deg > k).nonzero().flatten()
    if walked.numel() and num_walks > 0 and walk_length > 0:
        cum = torch.cat([torch.zeros(1, dtype=torch.float64), weight.cumsum(0)])
        batch = max(1, max_walkers // num_walks)
        visited, counts = [], []
        for b in range(0, walked.numel(), batch):  # walked is sorted: batch results stay sorted
            fpos = walked[b:b + batch].repeat_interleave(num_walks)
            home = frontier[fpos]
            pos, keys = home.clone(), []
            for _ in range(walk_length):
                lo, hi = rowptr[pos], rowptr[pos + 1]
                u = cum[lo] + torch.rand(pos.numel(), dtype=torch.float64, generator=generator) * (cum[hi] - cum[lo])
                idx = torch.minimum(torch.maximum(torch.searchsorted(cum, u, right=True) - 1, lo), hi - 1)
                step = torch.where(hi > lo, col[idx.clamp(min=0)], home)
                keys.append(fpos * n + step)
                pos = torch.where(torch.rand(pos.numel(), generator=generator) < restart, home, step)
            v, c = torch.unique(torch.cat(keys), return_counts=True)
            visited.append(v)
            counts.append(c)
        visited, counts = torch.cat(visited), torch.cat(counts)
        ckey = seg * n + cand
        at = torch.searchsorted(visited, ckey).clamp(max=visited.numel() - 1)
        score = torch.where(visited[at] == ckey, counts[at].double(), score) / (num_walks * walk_length)
    order = torch.argsort(cand, stable=True)  # lexicographic: segment, -score, -weight, node index
    for key in (-cand_w, -score, seg):
        order = order[torch.argsort(key[order], stable=True)]
    rank = torch.arange(order.numel()) - first[seg[order]]
    keep = order[rank < k]
    return torch.stack([frontier[seg[keep]], cand[keep]])


def build_conceptnet_graph(path: str | os.PathLike, classes: Sequence[ConceptClass], *,
                           anchors: Iterable[ConceptClass] = (), topk: tuple[int, int] = DEFAULT_TOPK,
                           num_walks: int = 200, walk_length: int = 10, restart: float = 0.5, seed: int = 0,
                           relations: Iterable[str] | None = None, progress: bool = True) -> KnowledgeGraph:
    """Build the ConceptNet 2-hop neighbourhood graph of ``classes``.

    Args:
        path: The assertions dump (``conceptnet-assertions-5.7.0.csv.gz``) or a file in its format.
        classes: The class synsets (see :func:`classes_from_wordnet`); their ConceptNet concepts
            become one node each, with the class id, and seed the neighbourhood.
        anchors: Further synsets concepts are identified with but not expanded from (e.g. a
            WordNet graph's other nodes, so that ``/c/en/mammal/n/wn/animal`` joins ``mammal.n.01``).
        topk: Neighbours kept per node at hop 1 and hop 2 (ZSL-KG: 100 and 50).
        num_walks, walk_length, restart: Random walks of :func:`rank_neighbours`.
        seed: Seed of the walks (the graph is deterministic given it).
        relations: Keep only these relation names (``IsA``, ...); all by default.
        progress: Show a progress bar while reading.

    Returns:
        A graph whose nodes are the classes (ids = wnids, in the given order, isolated if ConceptNet
        lacks them) followed by the kept concepts (ids = concept URIs); relations are ConceptNet's
        names (``IsA`` is hierarchical: start → end is child → parent), weights the summed
        assertion weights. ``manifest`` records the reading counts and the concept mapping.
    """
    t0 = time.perf_counter()
    classes = list({c.id: c for c in classes}.values())
    info = {c.id: c for c in [*anchors, *classes]}
    mapper = ConceptMapper(info.values())
    ids: dict[str, int] = {c.id: i for i, c in enumerate(info.values())}
    rel_ids: dict[str, int] = {}
    src, dst, rel, wts = array("q"), array("q"), array("i"), array("d")
    stats, self_loops, filtered = ReadStats(), 0, 0
    wanted = set(relations) if relations is not None else None
    for a in iter_assertions(path, stats, progress=progress):
        if wanted is not None and a.relation not in wanted:
            filtered += 1
            continue
        s, e = mapper.node(a.start), mapper.node(a.end)
        if s == e:
            self_loops += 1
            continue
        src.append(ids.setdefault(s, len(ids)))
        dst.append(ids.setdefault(e, len(ids)))
        rel.append(rel_ids.setdefault(a.relation, len(rel_ids)))
        wts.append(a.weight)
    if not stats.kept:  # an empty file, or another format (Numberbatch vectors, a CSV of one's own)
        malformed = ", ".join(f"{k}: {v}" for k, v in sorted(stats.malformed.items())) or "none"
        raise InputError(f"{path} holds no English ConceptNet assertion ({stats.lines} lines: {stats.non_english} "
                         f"not English, malformed {malformed}); give the ConceptNet 5.7 assertions dump "
                         "(conceptnet-assertions-5.7.0.csv.gz: tab-separated assertion URI, relation, start, end "
                         "and JSON info with a weight)")
    n = len(ids)
    s_t, d_t = _tensor(src, torch.long), _tensor(dst, torch.long)
    r_t, w_t = _tensor(rel, torch.int32).long(), _tensor(wts, torch.float64)
    del src, dst, rel, wts
    key, inv = torch.unique((r_t * n + s_t) * n + d_t, return_inverse=True)  # one edge per (relation, start, end)
    w_t = torch.zeros(key.numel(), dtype=torch.float64).index_add_(0, inv, w_t)
    r_t, s_t, d_t = key // (n * n), (key // n) % n, key % n
    rowptr, col, adj_w = _csr(s_t, d_t, w_t, n)
    gen = torch.Generator().manual_seed(seed)
    class_idx = torch.tensor([ids[c.id] for c in classes], dtype=torch.long)
    hop1 = rank_neighbours(rowptr, col, adj_w, class_idx, topk[0], num_walks, walk_length, restart, gen)
    first_hop = hop1[1][~torch.isin(hop1[1], class_idx)]
    hop2 = rank_neighbours(rowptr, col, adj_w, first_hop, topk[1], num_walks, walk_length, restart, gen)
    pairs = torch.cat([hop1, hop2], 1)
    pair_keys = torch.unique(torch.minimum(pairs[0], pairs[1]) * n + torch.maximum(pairs[0], pairs[1]))
    keep = torch.isin(torch.minimum(s_t, d_t) * n + torch.maximum(s_t, d_t), pair_keys)
    s_t, d_t, r_t, w_t = s_t[keep], d_t[keep], r_t[keep], w_t[keep]

    names = list(ids)  # index → node id
    order: dict[int, int] = {int(i): p for p, i in enumerate(class_idx.tolist())}
    for node in torch.cat([hop1[1], hop2[1]]).tolist():
        order.setdefault(node, len(order))
    rel_names = list(rel_ids)
    used = sorted({rel_names[r] for r in r_t.tolist()})
    rel_pos = {r: used.index(name) for r, name in enumerate(rel_names) if name in used}
    wnids = [names[node] for node in order]
    syn_names = [info[w].name if w in info else w[len("/c/en/"):] for w in wnids]
    lemmas = [list(info[w].lemmas) if w in info else [w[len("/c/en/"):].split("/", 1)[0]] for w in wnids]
    glosses = [info[w].gloss if w in info else "" for w in wnids]
    edges = [(order[s], order[d], rel_pos[r]) for s, d, r in zip(s_t.tolist(), d_t.tolist(), r_t.tolist())]
    graph = KnowledgeGraph(wnids=wnids, names=syn_names, lemmas=lemmas, glosses=glosses, edges=edges,
                           relations=used, weights=[round(w, 6) for w in w_t.tolist()])
    from kgzsl._version import __version__

    unmatched = [c.id for c in classes if c.id not in mapper.matched]
    graph.manifest = {
        "kgzsl_version": __version__, "source": "conceptnet",
        "conceptnet": {"path": str(Path(path).resolve()), "size": Path(path).stat().st_size, **stats.as_dict()},
        "build": {"topk": list(topk), "num_walks": num_walks, "walk_length": walk_length, "restart": restart,
                  "seed": seed, "relations": sorted(wanted) if wanted is not None else "all",
                  "ranking": "Monte-Carlo random walk with restart, visit share among direct neighbours",
                  "python": platform.python_version()},
        "counts": {"classes": len(classes), "classes_matched": len(classes) - len(unmatched),
                   "nodes": graph.num_nodes, "edges": len(edges), "relations": len(used),
                   "hop1_nodes": int(first_hop.unique().numel()), "english_nodes": n,
                   "english_edges": int(key.numel()), "self_loops": self_loops, "relation_filtered": filtered,
                   "malformed": stats.skipped_malformed},
        "unmatched_classes": unmatched, "ambiguous_terms": sorted(mapper.ambiguous),
        "class_concepts": {k: sorted(v) for k, v in mapper.matched.items()},
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    logger.info("ConceptNet graph: %d nodes, %d edges, %d relations; %d of %d classes matched; %d malformed "
                "lines skipped; %.1fs", graph.num_nodes, len(edges), len(used), len(classes) - len(unmatched),
                len(classes), stats.skipped_malformed, graph.manifest["build_seconds"])
    if unmatched:
        logger.warning("%d classes have no ConceptNet concept (isolated nodes): %s", len(unmatched),
                       ", ".join(unmatched[:10]) + (" ..." if len(unmatched) > 10 else ""))
    return graph


def _tensor(values: array, dtype: torch.dtype) -> torch.Tensor:
    """Copy a typed array into a tensor without a Python-level loop."""
    return torch.frombuffer(values, dtype=dtype).clone() if len(values) else torch.zeros(0, dtype=dtype)


def merge_graphs(wordnet_graph: KnowledgeGraph, conceptnet_graph: KnowledgeGraph) -> KnowledgeGraph:
    """Join a ConceptNet graph to a WordNet graph.

    WordNet nodes keep their ids, order, names and glosses; nodes with the same id (the classes,
    and anchors) become one node; the other ConceptNet nodes follow in their order. Relations are
    the union (WordNet's first); every edge keeps its relation and weight.

    Returns:
        The merged graph; its manifest nests both source manifests.
    """
    wn_ids, index = list(wordnet_graph.wnids), dict(wordnet_graph.index)
    names, lemmas, glosses = list(wordnet_graph.names), [list(x) for x in wordnet_graph.lemmas], \
        list(wordnet_graph.glosses)
    for i, node in enumerate(conceptnet_graph.wnids):
        if node not in index:
            index[node] = len(wn_ids)
            wn_ids.append(node)
            names.append(conceptnet_graph.names[i])
            lemmas.append(list(conceptnet_graph.lemmas[i]))
            glosses.append(conceptnet_graph.glosses[i])
    relations = list(dict.fromkeys([*wordnet_graph.relations, *conceptnet_graph.relations]))
    rel_pos = {r: i for i, r in enumerate(relations)}
    cn = conceptnet_graph
    edges = list(wordnet_graph.edges) + [(index[cn.wnids[s]], index[cn.wnids[d]], rel_pos[cn.relations[r]])
                                         for s, d, r in cn.edges]
    weights = wordnet_graph.edge_weight.tolist() + cn.edge_weight.tolist()
    merged = KnowledgeGraph(wnids=wn_ids, names=names, lemmas=lemmas, glosses=glosses, edges=edges,
                            relations=relations, weights=weights)
    shared = sum(1 for node in cn.wnids if node in wordnet_graph.index)
    merged.manifest = {
        "kgzsl_version": wordnet_graph.manifest.get("kgzsl_version", cn.manifest.get("kgzsl_version")),
        "source": "wordnet+conceptnet", "wordnet": wordnet_graph.manifest, "conceptnet": cn.manifest,
        "counts": {"nodes": merged.num_nodes, "edges": len(edges), "relations": len(relations),
                   "wordnet_nodes": wordnet_graph.num_nodes, "shared_nodes": shared,
                   "conceptnet_only_nodes": cn.num_nodes - shared},
    }
    return merged



def build_source_graph(source: str, wnids: Sequence[str], conceptnet: str | os.PathLike | None = None, *,
                       sources: list[dict[str, Any]] | None = None, topk: tuple[int, int] = DEFAULT_TOPK,
                       wordnet_dir: str | None = None, progress: bool = True) -> KnowledgeGraph:
    """Build the class graph of ``wnids`` from one of :data:`SOURCES` (what ``kgzsl build-graph`` runs).

    ``wordnet+conceptnet`` anchors ConceptNet concepts on every node of the WordNet graph (classes
    and their ancestors) and merges the two graphs with :func:`merge_graphs`.

    Raises:
        ValueError: For an unknown source, or a ConceptNet source without ``conceptnet``.
        FileNotFoundError: If the ConceptNet file does not exist.
    """
    from kgzsl.graph.build import build_wordnet_graph

    if source not in SOURCES:
        raise InputError(f"unknown graph source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "wordnet":
        return build_wordnet_graph(wnids, sources, wordnet_dir=wordnet_dir)
    if not conceptnet:
        raise InputError(f"source {source!r} needs conceptnet=PATH (conceptnet-assertions-5.7.0.csv.gz)",
                         cli_message=f"--source {source} needs --conceptnet PATH (conceptnet-assertions-5.7.0.csv.gz)")
    if Path(conceptnet).is_dir():
        raise InputError(f"{conceptnet} is a folder; give the assertions file in it "
                         "(conceptnet-assertions-5.7.0.csv.gz)", cli_message=f"--conceptnet {conceptnet} is a folder; "
                         "give the assertions file in it (conceptnet-assertions-5.7.0.csv.gz)")
    if not Path(conceptnet).is_file():
        raise NotFoundError(f"ConceptNet assertions file not found: {conceptnet}")
    classes = classes_from_wordnet(wnids, wordnet_dir)
    if source == "conceptnet":
        graph = build_conceptnet_graph(conceptnet, classes, topk=topk, progress=progress)
        graph.manifest["sources"] = sources or []
        return graph
    wordnet_graph = build_wordnet_graph(wnids, sources, wordnet_dir=wordnet_dir)
    requested = set(wnids)
    anchors = classes_from_wordnet([w for w in wordnet_graph.wnids if w not in requested], wordnet_dir)
    cn_graph = build_conceptnet_graph(conceptnet, classes, anchors=anchors, topk=topk, progress=progress)
    return merge_graphs(wordnet_graph, cn_graph)
