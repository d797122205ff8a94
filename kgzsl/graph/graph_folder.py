"""The graph folder: how a :class:`~kgzsl.graph.KnowledgeGraph` is stored and read back.

::

    graph_data/<name>/
      manifest.json    kgzsl/WordNet versions, source lists, counts, build config, format version
      nodes.tsv        wnid, synset name, lemma names ('|'-separated), gloss
      edges.tsv        source id, target id, relation, weight (child → parent for hierarchical relations)
      ancestors.tsv    node wnid, ancestor wnid, hop distance (DGP's dense edges, distance >= 1)

Each file is written atomically and the manifest last, so that a folder whose writing was cut
short reads as incomplete, never as a mix of two graphs. Every malformed file gets a
:class:`GraphFormatError` that names the file, the line and the fix.

Example:
    >>> fields = read_graph_folder(Path("graph_data/imagenet1k_21k"))   # KnowledgeGraph(**fields)
    >>> wnids, names, lemmas, glosses = read_nodes(Path("runs/demo/nodes.tsv"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError
from kgzsl.utils.io import write_json, write_text

__all__ = ["FORMAT_VERSION", "RELATIONS", "GraphFormatError", "one_line", "read_graph_folder", "read_nodes", "write_graph_folder"]

FORMAT_VERSION = 1
RELATIONS = ("hypernym", "instance_hypernym")
_REBUILD = "rebuild the graph with `kgzsl build-graph`"
_NODE_FIELDS = "wnid, name, lemmas and gloss"


class GraphFormatError(InputError):
    """A graph folder is missing files, is malformed, or comes from another format version."""


def write_graph_folder(graph: Any, path: Path) -> Path:
    """Write ``graph`` (a :class:`~kgzsl.graph.KnowledgeGraph`) as a graph folder at ``path``; return the path."""
    path.mkdir(parents=True, exist_ok=True)
    # Each file is replaced atomically; dropping the old manifest first means a process killed
    # half-way through re-saving leaves a folder that loads as "incomplete", never a mix of versions.
    (path / "manifest.json").unlink(missing_ok=True)
    nodes = "".join(f"{w}\t{n}\t{'|'.join(ls)}\t{one_line(g)}\n"
                    for w, n, ls, g in zip(graph.wnids, graph.names, graph.lemmas, graph.glosses))
    write_text(path / "nodes.tsv", "wnid\tname\tlemmas\tgloss\n" + nodes)
    weights = graph.weights if graph.weights is not None else [1.0] * len(graph.edges)
    w = graph.wnids
    edges = "".join(f"{w[c]}\t{w[p]}\t{graph.relations[r]}\t{x:g}\n" for (c, p, r), x in zip(graph.edges, weights))
    write_text(path / "edges.tsv", "source\ttarget\trelation\tweight\n" + edges)
    index, dist = graph.ancestor_index()
    anc = "".join(f"{w[a]}\t{w[b]}\t{d}\n" for a, b, d in zip(index[0].tolist(), index[1].tolist(), dist.tolist()))
    write_text(path / "ancestors.tsv", "node\tancestor\tdistance\n" + anc)
    manifest = dict(graph.manifest, format_version=FORMAT_VERSION, relations=list(graph.relations))
    write_json(path / "manifest.json", manifest)  # written last: its presence marks a complete graph
    return path


def read_graph_folder(path: Path) -> dict[str, Any]:
    """The fields of the graph stored at ``path``, as :class:`~kgzsl.graph.KnowledgeGraph` takes them
    (``wnids``, ``names``, ``lemmas``, ``glosses``, ``edges``, ``manifest``, ``relations``, ``weights``,
    ``known_ancestors``).

    Raises:
        GraphFormatError: If files are missing or malformed, or the format version differs.
    """
    manifest = _read_manifest(path)
    relations = manifest.get("relations", list(RELATIONS))
    if not (isinstance(relations, list) and all(isinstance(r, str) for r in relations)):
        raise GraphFormatError(f"{path / 'manifest.json'}: 'relations' must be a list of names, got "
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
    except GraphFormatError:  # a malformed line: its message already says what to do
        raise
    except (KeyError, ValueError, OverflowError, RuntimeError) as exc:
        raise GraphFormatError(f"{path}: an edge names an unknown node or relation, or has a malformed "
                               f"weight or distance ({exc}); rebuild it") from None
    return dict(wnids=wnids, names=names, lemmas=lemmas, glosses=glosses, edges=edges, manifest=manifest,
                relations=relations, weights=None if all(w == 1.0 for w in weights) else weights,
                known_ancestors=(t[:, :2].T.contiguous(), t[:, 2].contiguous()))


def _read_manifest(path: Path) -> dict[str, Any]:
    """The folder's ``manifest.json``, checked to be a graph of this format version."""
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
    return manifest


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (tabs, newlines, double spaces) made one space: the form a
    gloss takes in ``nodes.tsv``, and so in every graph (:class:`~kgzsl.graph.KnowledgeGraph` applies it),
    so that a graph built in memory and the same graph read back embed the same text."""
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
