"""The class graph: WordNet noun synsets, child→parent edges, and DGP's ancestor table.

A :class:`KnowledgeGraph` is built once (see :mod:`kgzsl.graph.build`) and stored as a folder::

    graph_data/<name>/
      manifest.json    kgzsl/WordNet versions, source lists, counts, build config
      nodes.tsv        wnid, synset name, lemma names ('|'-separated), gloss
      edges.tsv        source id, target id, relation, weight (child → parent for hierarchical relations)
      ancestors.tsv    node wnid, ancestor wnid, hop distance (DGP's dense edges, distance >= 1)

Node order is fixed at build time and is the row order of every matrix derived from the graph.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from kgzsl.errors import InputError
from kgzsl.utils.io import write_json, write_text

__all__ = ["KnowledgeGraph", "GraphFormatError", "FORMAT_VERSION", "ancestor_pairs"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
RELATIONS = ("hypernym", "instance_hypernym")
#: relations that point from a class to a more general one; only these define ancestors
HIERARCHICAL = frozenset({"hypernym", "instance_hypernym", "IsA"})


def ancestor_pairs(parents: list[list[int]], nodes: Iterable[int]) -> list[tuple[int, int, int]]:
    """``(node, ancestor, hop distance)`` for each of ``nodes``, by breadth-first search (shortest distance)."""
    pairs: list[tuple[int, int, int]] = []
    for node in nodes:
        seen = {node: 0}
        queue = deque([node])
        while queue:
            cur = queue.popleft()
            for par in parents[cur]:
                if par not in seen:
                    seen[par] = seen[cur] + 1
                    queue.append(par)
                    pairs.append((node, par, seen[par]))
    return pairs


class GraphFormatError(InputError):
    """A graph folder is missing files, is malformed, or comes from another format version."""


@dataclass
class KnowledgeGraph:
    """Class nodes and their hypernym edges.

    Args:
        wnids: Node ids (WordNet wnids, or any unique string for custom nodes).
        names: Synset names (``dog.n.01``), one per node.
        lemmas: Lemma names per node (``["dog", "domestic_dog", "Canis_familiaris"]``).
        glosses: Definitions per node.
        edges: ``(source, target, relation)`` index triples; ``relation`` indexes ``relations``. For
            hierarchical relations (:data:`HIERARCHICAL`) the source is the child, the target the parent.
        relations: Relation names (WordNet graphs: ``hypernym``, ``instance_hypernym``).
        weights: Optional per-edge weights (e.g. ConceptNet assertion weights); 1.0 when None.
        manifest: Build metadata (sources, counts, versions).
        path: The folder the graph was loaded from or saved to, if any.

    Shapes:
        - :attr:`edge_index`: ``[2, E]``, row 0 child, row 1 parent.
        - :meth:`ancestor_index`: ``[2, M]`` (node, ancestor) pairs with ``[M]`` hop distances.
    """

    wnids: list[str]
    names: list[str]
    lemmas: list[list[str]]
    glosses: list[str]
    edges: list[tuple[int, int, int]]
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    relations: list[str] = field(default_factory=lambda: list(RELATIONS))
    weights: list[float] | None = None

    def __post_init__(self) -> None:
        n = len(self.wnids)
        if not (len(self.names) == len(self.lemmas) == len(self.glosses) == n):
            raise GraphFormatError("wnids, names, lemmas and glosses must have one entry per node")
        if len(set(self.wnids)) != n:
            raise GraphFormatError("node ids must be unique")
        for child, parent, rel in self.edges:
            if not (0 <= child < n and 0 <= parent < n):
                raise GraphFormatError(f"edge ({child}, {parent}) points outside the {n} nodes")
            if not 0 <= rel < len(self.relations):
                raise GraphFormatError(f"edge ({child}, {parent}) has relation {rel}, not one of {self.relations}")
        if self.weights is not None and len(self.weights) != len(self.edges):
            raise GraphFormatError(f"{len(self.weights)} edge weights for {len(self.edges)} edges")

    def __len__(self) -> int:
        return len(self.wnids)

    @property
    def num_nodes(self) -> int:
        """Number of nodes."""
        return len(self.wnids)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Map from wnid to node index."""
        return {w: i for i, w in enumerate(self.wnids)}

    @property
    def edge_index(self) -> torch.Tensor:
        """Child→parent edges as a ``[2, E]`` long tensor."""
        if not self.edges:
            return torch.zeros(2, 0, dtype=torch.long)
        return torch.tensor([[c for c, _, _ in self.edges], [p for _, p, _ in self.edges]], dtype=torch.long)

    @property
    def edge_type(self) -> torch.Tensor:
        """Relation index of each edge, ``[E]``."""
        return torch.tensor([r for _, _, r in self.edges], dtype=torch.long)

    @property
    def edge_weight(self) -> torch.Tensor:
        """Weight of each edge, ``[E]`` (ones when the graph has none)."""
        if self.weights is None:
            return torch.ones(len(self.edges))
        return torch.tensor(self.weights, dtype=torch.float)

    @functools.cached_property
    def parents(self) -> list[list[int]]:
        """Direct parents of each node, over the hierarchical relations only."""
        hierarchical = {i for i, name in enumerate(self.relations) if name in HIERARCHICAL}
        out: list[list[int]] = [[] for _ in range(self.num_nodes)]
        for child, parent, rel in self.edges:
            if rel in hierarchical:
                out[child].append(parent)
        return out

    @functools.cached_property
    def _ancestors(self) -> tuple[torch.Tensor, torch.Tensor]:
        stored = getattr(self, "_stored_ancestors", None)
        if stored is not None:
            return stored
        pairs = ancestor_pairs(self.parents, range(self.num_nodes))
        if not pairs:
            return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        t = torch.tensor(pairs, dtype=torch.long)
        return t[:, :2].T.contiguous(), t[:, 2].contiguous()

    def ancestor_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every (node, ancestor) pair with its shortest hop distance (>= 1).

        Returns:
            ``(index [2, M], distance [M])``.
        """
        return self._ancestors

    def ancestor_groups(self, num_groups: int = 5) -> list[torch.Tensor]:
        """DGP's dense edges grouped by distance.

        Group 0 holds the self loops; group ``k`` (1 <= k < num_groups - 1) the pairs at distance
        ``k``; the last group every pair at distance ``>= num_groups - 1``.

        Returns:
            A list of ``num_groups`` ``[2, M_k]`` (node, ancestor) index tensors.
        """
        if num_groups < 2:
            raise ValueError(f"num_groups must be >= 2, got {num_groups}")
        index, dist = self.ancestor_index()
        loops = torch.arange(self.num_nodes).repeat(2, 1)
        groups = [loops]
        for k in range(1, num_groups):
            mask = dist == k if k < num_groups - 1 else dist >= k
            groups.append(index[:, mask])
        return groups

    def subgraph_roots(self) -> list[int]:
        """Nodes without parents (``entity.n.01`` for a WordNet graph)."""
        return [i for i, ps in enumerate(self.parents) if not ps]

    def save(self, path: str | Path) -> Path:
        """Write the graph folder (each file atomically) and return its path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # Each file is replaced atomically; dropping the old manifest first means a process killed
        # half-way through re-saving leaves a folder that loads as "incomplete", never a mix of versions.
        (path / "manifest.json").unlink(missing_ok=True)
        nodes = "".join(
            f"{w}\t{n}\t{'|'.join(ls)}\t{_clean(g)}\n"
            for w, n, ls, g in zip(self.wnids, self.names, self.lemmas, self.glosses))
        write_text(path / "nodes.tsv", "wnid\tname\tlemmas\tgloss\n" + nodes)
        weights = self.weights if self.weights is not None else [1.0] * len(self.edges)
        edges = "".join(f"{self.wnids[c]}\t{self.wnids[p]}\t{self.relations[r]}\t{w:g}\n"
                        for (c, p, r), w in zip(self.edges, weights))
        write_text(path / "edges.tsv", "source\ttarget\trelation\tweight\n" + edges)
        index, dist = self.ancestor_index()
        w = self.wnids
        anc = "".join(f"{w[a]}\t{w[b]}\t{d}\n" for a, b, d in zip(index[0].tolist(), index[1].tolist(), dist.tolist()))
        write_text(path / "ancestors.tsv", "node\tancestor\tdistance\n" + anc)
        manifest = dict(self.manifest, format_version=FORMAT_VERSION, relations=list(self.relations))
        write_json(path / "manifest.json", manifest)  # written last: its presence marks a complete graph
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeGraph:
        """Read a graph folder written by :meth:`save`.

        Raises:
            GraphFormatError: If files are missing or malformed, or the format version differs.
        """
        path = Path(path)
        manifest_file = path / "manifest.json"
        if not manifest_file.is_file():
            raise GraphFormatError(f"{path} is not a kgzsl graph (no manifest.json); build one with "
                                   f"`kgzsl build-graph --wnids imagenet1k,imagenet21k --out {path}`")
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise GraphFormatError(f"{manifest_file} is not valid JSON ({exc}); rebuild the graph") from None
        if not isinstance(manifest, dict):
            raise GraphFormatError(f"{manifest_file} must hold a JSON object, got {type(manifest).__name__}; "
                                   "rebuild the graph with `kgzsl build-graph`")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise GraphFormatError(f"{path} has graph format {version!r}, this kgzsl reads format "
                                   f"{FORMAT_VERSION} (written by kgzsl {manifest.get('kgzsl_version', '?')}); "
                                   "rebuild it with `kgzsl build-graph`")
        relations = manifest.get("relations", list(RELATIONS))
        if not (isinstance(relations, list) and all(isinstance(r, str) for r in relations)):
            raise GraphFormatError(f"{manifest_file}: 'relations' must be a list of names, got "
                                   f"{relations!r}; rebuild the graph")
        rows = _read_tsv(path / "nodes.tsv", 4)
        wnids = [r[0] for r in rows]
        index = {w: i for i, w in enumerate(wnids)}
        rel_index = {r: i for i, r in enumerate(relations)}
        try:
            edge_rows = _read_tsv(path / "edges.tsv", 4)
            edges = [(index[c], index[p], rel_index[r]) for c, p, r, _ in edge_rows]
            weights = [float(w) for *_, w in edge_rows]
            anc = [(index[a], index[b], int(d)) for a, b, d in _read_tsv(path / "ancestors.tsv", 3)]
            t = torch.tensor(anc, dtype=torch.long) if anc else None
        except (KeyError, ValueError, OverflowError, RuntimeError) as exc:
            raise GraphFormatError(f"{path}: an edge names an unknown node or relation, or has a malformed "
                                   f"weight or distance ({exc}); rebuild it") from None
        graph = cls(wnids=wnids, names=[r[1] for r in rows], lemmas=[r[2].split("|") if r[2] else [] for r in rows],
                    glosses=[r[3] for r in rows], edges=edges, manifest=manifest, path=path, relations=relations,
                    weights=None if all(w == 1.0 for w in weights) else weights)
        if t is not None:
            graph._stored_ancestors = (t[:, :2].T.contiguous(), t[:, 2].contiguous())
        else:
            graph._stored_ancestors = (torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        return graph

    def __repr__(self) -> str:
        name = self.path.name if self.path else "in-memory"
        return f"KnowledgeGraph({name!r}, nodes={self.num_nodes}, edges={len(self.edges)})"


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def _read_tsv(path: Path, columns: int) -> list[list[str]]:
    if not path.is_file():
        raise GraphFormatError(f"graph file missing: {path}; rebuild the graph with `kgzsl build-graph`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GraphFormatError(f"{path} is not UTF-8 text ({exc}); rebuild the graph with `kgzsl build-graph`") from None
    rows = []
    # split on newlines only: str.splitlines() would also split inside a name on \x1c, \x85, \u2028 ...
    for i, line in enumerate(text.split("\n")[1:], start=2):
        line = line.removesuffix("\r")
        if not line:
            continue
        row = line.split("\t")
        if len(row) != columns:
            raise GraphFormatError(f"{path}:{i}: expected {columns} tab-separated fields, got {len(row)}; "
                                   "rebuild the graph with `kgzsl build-graph`")
        rows.append(row)
    return rows
