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
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgzsl.graph.ancestors import ancestor_distances, ancestor_pairs, common_ancestors, lca_path
from kgzsl.errors import InputError
from kgzsl.utils.io import write_json, write_text

__all__ = ["KnowledgeGraph", "GraphFormatError", "FORMAT_VERSION", "read_nodes", "ancestor_pairs"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
RELATIONS = ("hypernym", "instance_hypernym")
#: relations that point from a class to a more general one; only these define ancestors
HIERARCHICAL = frozenset({"hypernym", "instance_hypernym", "IsA"})


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
        wnids, names, lemmas, glosses = read_nodes(path / "nodes.tsv")
        index = {w: i for i, w in enumerate(wnids)}
        rel_index = {r: i for i, r in enumerate(relations)}
        try:
            edge_rows = _read_tsv(path / "edges.tsv", 4)
            edges = [(index[c], index[p], rel_index[r]) for c, p, r, _ in edge_rows]
            weights = [float(w) for *_, w in edge_rows]
            anc = [(index[a], index[b], int(d)) for a, b, d in _read_tsv(path / "ancestors.tsv", 3)]
            t = torch.tensor(anc, dtype=torch.long) if anc else torch.zeros(0, 3, dtype=torch.long)
        except (KeyError, ValueError, OverflowError, RuntimeError) as exc:
            raise GraphFormatError(f"{path}: an edge names an unknown node or relation, or has a malformed "
                                   f"weight or distance ({exc}); rebuild it") from None
        return cls(wnids=wnids, names=names, lemmas=lemmas, glosses=glosses, edges=edges, manifest=manifest,
                   path=path, relations=relations,
                   weights=None if all(w == 1.0 for w in weights) else weights,
                   known_ancestors=(t[:, :2].T.contiguous(), t[:, 2].contiguous()))

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


def _clean(text: str) -> str:
    return " ".join(str(text).split())


_REBUILD = "rebuild the graph with `kgzsl build-graph`"
_NODE_FIELDS = "wnid, name, lemmas and gloss"


def read_nodes(path: Path, fix: str = _REBUILD) -> tuple[list[str], list[str], list[list[str]], list[str]]:
    """Read a ``nodes.tsv`` (a graph's, or the copy in a run folder).

    Args:
        path: The file: a header line, then ``wnid, synset name, lemmas ('|'-separated), gloss``
            separated by tabs, one node per line.
        fix: What the error messages tell the user to do.

    Returns:
        ``(wnids, names, lemmas, glosses)`` in file order.

    Raises:
        GraphFormatError: If the file is missing or not UTF-8, a line has another number of
            fields, or a node id comes twice (the message names the file, the line and ``fix``).
    """
    rows = _read_tsv(path, 4, fix, _NODE_FIELDS)
    wnids = [r[0] for r in rows]
    if len(set(wnids)) != len(wnids):
        raise GraphFormatError(f"{path} lists a node id twice; {fix}")
    return wnids, [r[1] for r in rows], [r[2].split("|") if r[2] else [] for r in rows], [r[3] for r in rows]


def _read_tsv(path: Path, columns: int, fix: str = _REBUILD, names: str | None = None) -> list[list[str]]:
    """The rows of a tab-separated file after its header line; ``names`` describes the ``columns`` fields."""
    if not path.is_file():
        raise GraphFormatError(f"graph file missing: {path}; {fix}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GraphFormatError(f"{path} is not UTF-8 text ({exc}); {fix}") from None
    expected = f"{names} separated by tabs" if names else f"{columns} tab-separated fields"
    rows = []
    # split on newlines only: str.splitlines() would also split inside a name on \x1c, \x85, \u2028 ...
    for i, line in enumerate(text.split("\n")[1:], start=2):
        line = line.removesuffix("\r")
        if not line:
            continue
        row = line.split("\t")
        if len(row) != columns:
            raise GraphFormatError(f"{path}:{i}: expected {expected}, got {len(row)} field(s); {fix}")
        rows.append(row)
    return rows
