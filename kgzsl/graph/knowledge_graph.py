"""The class graph: WordNet noun synsets, child→parent edges, and DGP's ancestor table.

A :class:`KnowledgeGraph` is built once (see :mod:`kgzsl.graph.build`) and stored as a folder of
``manifest.json``, ``nodes.tsv``, ``edges.tsv`` and ``ancestors.tsv`` (:mod:`kgzsl.graph.graph_folder`).

Node order is fixed at build time and is the row order of every matrix derived from the graph."""

from __future__ import annotations

import functools
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgzsl.graph.ancestors import ancestor_distances, ancestor_pairs, common_ancestors, lca_path
from kgzsl.graph.graph_folder import RELATIONS, GraphFormatError, one_line, read_graph_folder, write_graph_folder

__all__ = ["KnowledgeGraph", "HIERARCHICAL"]

#: relations that point from a class to a more general one; only these define ancestors
HIERARCHICAL = frozenset({"hypernym", "instance_hypernym", "IsA"})


@dataclass
class KnowledgeGraph:
    """Class nodes and their hypernym edges.

    Args:
        wnids: Node ids (WordNet wnids, or any unique string for custom nodes).
        names: Synset names (``dog.n.01``), one per node.
        lemmas: Lemma names per node (``["dog", "domestic_dog", "Canis_familiaris"]``).
        glosses: Definitions per node (whitespace runs become one space, as in ``nodes.tsv``).
        edges: ``(source, target, relation)`` index triples; ``relation`` indexes ``relations``. For
            hierarchical relations (:data:`HIERARCHICAL`) the source is the child, the target the parent.
        relations: Relation names (WordNet graphs: ``hypernym``, ``instance_hypernym``).
        weights: Optional per-edge weights (e.g. ConceptNet assertion weights); 1.0 when None.
        manifest: Build metadata (sources, counts, versions).
        path: The folder the graph was loaded from or saved to, if any.
        known_ancestors: The ancestor table ``(index [2, M], distance [M])`` when it is already known
            (read from ``ancestors.tsv``, or extended by :meth:`extended`); searched on first use when None.

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
    known_ancestors: InitVar[tuple[torch.Tensor, torch.Tensor] | None] = None

    def __post_init__(self, known_ancestors: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        n = len(self.wnids)
        if not (len(self.names) == len(self.lemmas) == len(self.glosses) == n):
            raise GraphFormatError("wnids, names, lemmas and glosses must have one entry per node")
        self.glosses = [one_line(g) for g in self.glosses]  # the text a graph read back from disk has
        if len(set(self.wnids)) != n:
            raise GraphFormatError("node ids must be unique")
        for child, parent, rel in self.edges:
            if not (0 <= child < n and 0 <= parent < n):
                raise GraphFormatError(f"edge ({child}, {parent}) points outside the {n} nodes")
            if not 0 <= rel < len(self.relations):
                raise GraphFormatError(f"edge ({child}, {parent}) has relation {rel}, not one of {self.relations}")
        if self.weights is not None and len(self.weights) != len(self.edges):
            raise GraphFormatError(f"{len(self.weights)} edge weights for {len(self.edges)} edges")
        if known_ancestors is not None:
            index, dist = known_ancestors
            if index.ndim != 2 or index.size(0) != 2 or dist.shape != (index.size(1),):
                raise GraphFormatError(f"known_ancestors must be (index [2, M], distance [M]), got shapes "
                                       f"{tuple(index.shape)} and {tuple(dist.shape)}")
        self._stored_ancestors = known_ancestors

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
        if self._stored_ancestors is not None:
            return self._stored_ancestors
        pairs = ancestor_pairs(self.parents, range(self.num_nodes))
        if not pairs:
            return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        t = torch.tensor(pairs, dtype=torch.long)
        return t[:, :2].T.contiguous(), t[:, 2].contiguous()

    def ancestors(self, node: int) -> dict[int, int]:
        """Shortest hop distance of each ancestor of ``node`` (``node`` itself at 0), over :attr:`parents`."""
        return ancestor_distances(self.parents, node)

    def common_ancestors(self, a: int, b: int) -> dict[int, tuple[int, int]]:
        """The nodes at or above both ``a`` and ``b``, each with ``(hops from a, hops from b)``."""
        return common_ancestors(self.parents, a, b)

    def lca_path(self, a: int, b: int) -> tuple[list[int], int | None]:
        """Shortest path ``a → … → lca → … → b`` and the lowest common ancestor (``([], None)`` if none).

        See :func:`kgzsl.graph.ancestors.lca_path`.
        """
        return lca_path(self.parents, a, b)

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
        """Write the graph folder (each file atomically, the manifest last) and return its path."""
        self.path = write_graph_folder(self, Path(path))
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeGraph:
        """Read a graph folder written by :meth:`save`.

        Raises:
            GraphFormatError: If files are missing or malformed, or the format version differs.
        """
        fields = read_graph_folder(Path(path))
        return cls(path=Path(path), **fields)

    def extended(self, wnids: list[str], names: list[str], lemmas: list[list[str]], glosses: list[str],
                 edges: list[tuple[int, int, int]], weights: list[float] | None = None) -> KnowledgeGraph:
        """A new graph: this one with nodes appended after its own and edges added (this graph is unchanged).

        New nodes may only hang *below* the existing ones, so the existing nodes' ancestors stay as
        they are and only the new nodes' ancestors are searched (cheap on a 30k-node graph).

        Args:
            wnids: Ids of the new nodes, numbered ``len(self)``, ``len(self) + 1``, ... in this order.
            names: Their synset names.
            lemmas: Their lemma names.
            glosses: Their definitions.
            edges: New ``(source, target, relation)`` triples over the combined numbering; the source
                (child) of every hierarchical edge must be a new node.
            weights: Weights of the new edges (1.0 each when None).

        Returns:
            The extended graph, not tied to a folder (``path`` None), with its ancestor table known.

        Raises:
            GraphFormatError: If the new nodes or edges are malformed, or a hierarchical edge starts at
                an existing node (it would change that node's ancestors).
        """
        n, k = self.num_nodes, len(wnids)
        hierarchical = {i for i, name in enumerate(self.relations) if name in HIERARCHICAL}
        parents = [list(ps) for ps in self.parents] + [[] for _ in range(k)]
        for child, parent, rel in edges:
            if rel in hierarchical and not n <= child < n + k:
                raise GraphFormatError(f"edge ({child}, {parent}) would give existing node {child} a new parent; "
                                       "new nodes can only be added below existing ones")
            if rel in hierarchical and 0 <= parent < n + k:
                parents[child].append(parent)
        if weights is not None and len(weights) != len(edges):
            raise GraphFormatError(f"{len(weights)} edge weights for {len(edges)} new edges")
        if self.weights is None and weights is None:
            all_weights = None
        else:
            old = self.weights if self.weights is not None else [1.0] * len(self.edges)
            all_weights = list(old) + (list(weights) if weights is not None else [1.0] * len(edges))
        index, dist = self.ancestor_index()
        pairs = ancestor_pairs(parents, range(n, n + k))
        if pairs:
            t = torch.tensor(pairs, dtype=torch.long)
            index, dist = torch.cat([index, t[:, :2].T], 1), torch.cat([dist, t[:, 2]])
        return KnowledgeGraph(wnids=self.wnids + list(wnids), names=self.names + list(names),
                              lemmas=self.lemmas + [list(ls) for ls in lemmas], glosses=self.glosses + list(glosses),
                              edges=self.edges + list(edges), manifest=dict(self.manifest), path=None,
                              relations=list(self.relations), weights=all_weights,
                              known_ancestors=(index.contiguous(), dist.contiguous()))

    def __repr__(self) -> str:
        name = self.path.name if self.path else "in-memory"
        return f"KnowledgeGraph({name!r}, nodes={self.num_nodes}, edges={len(self.edges)})"
