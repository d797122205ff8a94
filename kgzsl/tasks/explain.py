"""Why a label scored as it did: the seen classes and WordNet paths that carried its predicted row.

A predicted row is built by propagating over the graph from the classes the backbone was trained
on. :func:`explain` names the seen classes whose real backbone rows (``classifier_rows()``,
normalised) are closest to the label's predicted row, the graph path between each of them and the
label (up to their lowest common ancestor and down, :meth:`KnowledgeGraph.lca_path
<kgzsl.graph.knowledge_graph.KnowledgeGraph.lca_path>`), and the image's own top seen-class evidence
(the backbone's ImageNet-1k softmax). :func:`explain_png` draws that neighbourhood of the graph
(:func:`explanation_png`: the same drawing as PNG bytes).

Example:
    >>> result = clf.explain("cat.jpg", "Burmese cat")
    >>> result["similar_seen"][0]["path"]
    ['burmese_cat.n.01', 'domestic_cat.n.01', 'tabby.n.01']
    >>> explain_png(result, "why.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kgzsl.errors import InputError
from kgzsl.inference.batches import check_top_k
from kgzsl.vision.images import ImageSource, load_image
from kgzsl.utils.io import figure_png, write_bytes

__all__ = ["explain", "explain_png", "explanation_png", "format_explanation", "check_png_path"]


def _graph(clf: Any) -> Any:
    from kgzsl.inference.concept_state import concept_graph

    return concept_graph(clf).graph


def explain(clf: Any, image: ImageSource, label: str, top_k: int = 5) -> dict[str, Any]:
    """Explain the score of ``label`` for ``image``.

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier` loaded from a run folder.
        image: A path or PIL image.
        label: A word, synset name or wnid (a graph node, an added concept, or any WordNet noun).
        top_k: How many similar seen classes and how many image evidence classes (at most the
            backbone's classes).

    Returns:
        A JSON-able dict: ``label``, ``wnid``, ``synset`` (for a word of several senses, the one
        the image fits best, as ``predict`` reports it; then ``default_synset`` names the word's
        first sense where it differs), ``logit`` (the label's logit for the image), ``row``
        (``"real"`` for one of the backbone's classes, scored with its own row as ``predict`` scores
        it, else ``"predicted"``), ``similar_seen`` (``[{wnid, synset, similarity, lca, path}]``: the
        seen classes whose real rows are nearest that row, ``path`` a list of synset names from the
        seen class to the label) and ``image_evidence``
        (``[{wnid, synset, probability}]``, the backbone's own top ImageNet-1k classes).

    Raises:
        kgzsl.inference.labels.LabelError: If the label cannot be resolved (a WordNet noun that is not
            a node is added first, as ``predict`` does).
        kgzsl.errors.InputError: If ``top_k`` is not an integer >= 1.
    """
    top_k = check_top_k(top_k, 5)
    res = clf.resolve_labels([label])[0]  # a WordNet noun not yet a node is added, as predict adds it
    head = clf.candidate_head([label])
    backbone = clf.backbone
    x = backbone.transform(load_image(image, max_pixels=clf.max_pixels))[None].to(backbone.device)
    with torch.inference_mode():
        feats = backbone(x)
        probs = backbone.logits(x).softmax(-1)[0].float().cpu()
        if hasattr(head, "choose"):  # a word of several senses: the one this image fits best, as predict reports
            logits, choice = head.choose(feats)
            node = head.senses[0][int(choice[0, 0])]
        else:
            logits, node = head.logits(feats), res.index
        logit = float(logits[0, 0])
    graph = _graph(clf)
    real = F.normalize(backbone.classifier_rows().float(), dim=1)
    seen = [(i, graph.index[w]) for i, w in enumerate(backbone.wnids) if w in graph.index and graph.index[w] != node]
    # the row predict scores the label with: a backbone class keeps its real row (unless every candidate
    # is scored by its predicted row, scoring="predicted")
    own = clf.scoring != "predicted" and node in set(clf.seen_nodes().tolist())
    row = F.normalize((clf.score_rows()[node] if own else clf.rows[node]).float().to(real.device), dim=0)
    sims = real[[i for i, _ in seen]] @ row
    best = sims.topk(min(top_k, len(seen)))
    similar = []
    for s, j in zip(best.values.tolist(), best.indices.tolist()):
        near = seen[j][1]
        path, lca = graph.lca_path(near, node)
        similar.append({"wnid": graph.wnids[near], "synset": graph.names[near], "similarity": round(s, 4),
                        "lca": graph.names[lca] if lca is not None else None,
                        "path": [graph.names[n] for n in path]})
    top = probs.topk(min(top_k, probs.numel()))
    evidence = []
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        w = backbone.wnids[i]
        evidence.append({"wnid": w, "synset": graph.names[graph.index[w]] if w in graph.index else w,
                         "probability": round(p, 4)})
    result = {"image": str(image) if isinstance(image, (str, Path)) else type(image).__name__, "label": res.label,
              "wnid": clf.wnids[node], "synset": clf.names[node], "logit": round(logit, 4),
              "row": "real" if own else "predicted", "similar_seen": similar,
              "image_evidence": evidence}
    if node != res.index:  # the image chose another sense than the word's first
        result["default_synset"] = res.synset
    return result


def format_explanation(result: dict[str, Any]) -> str:
    """Readable text of an :func:`explain` result."""
    chosen = f"; the sense this image fits best, not {result['default_synset']}" if "default_synset" in result else ""
    node = result["synset"] if result["synset"] == result["wnid"] else f"{result['synset']}, {result['wnid']}"
    carried = "  carried by the seen classes (cosine of their real row to the predicted row; graph path):"
    if result.get("row") == "real":
        carried = ("  one of the backbone's own classes, scored with its real row; the seen classes nearest to it "
                   "(cosine of their real rows; graph path):")
    lines = [f"{result['label']} ({node}{chosen}): logit {result['logit']:.3f}", carried]
    for s in result["similar_seen"]:
        lines.append(f"    {s['similarity']:+.3f}  {s['synset']:<28} {' → '.join(s['path']) or '(no path)'}")
    lines.append("  the image's own seen-class evidence (backbone softmax):")
    for e in result["image_evidence"]:
        lines.append(f"    {e['probability']:7.2%}  {e['synset']} ({e['wnid']})")
    return "\n".join(lines)


def _tree_positions(g: Any, root: str, first: list[str]) -> tuple[dict[str, tuple[float, float]], int]:
    """Positions of a tidy tree drawing: ``root`` on top, each node one row below its parent in a
    breadth-first tree, leaves side by side; nodes that no path joins to ``root`` (``first`` says
    which to start from) hang from the top row as trees of their own. Returns the positions and
    the number of leaves (the drawing's width)."""
    import networkx as nx

    x: dict[str, float] = {}
    y: dict[str, float] = {}

    def place(tree: Any, node: str, row: int, free: int) -> int:
        y[node] = -row
        kids = sorted(tree.successors(node))
        if not kids:
            x[node] = free
            return free + 1
        for kid in kids:
            free = place(tree, kid, row + 1, free)
        x[node] = (x[kids[0]] + x[kids[-1]]) / 2
        return free

    free = place(nx.bfs_tree(g, root), root, 0, 0)
    for start in first:  # paths that do not reach the label (none in WordNet; guarded all the same)
        if start not in x:
            free = place(nx.bfs_tree(g, start), start, 1, free)
    return {n: (x[n], y[n]) for n in x}, free


def explanation_png(result: dict[str, Any]) -> bytes:
    """The explanation's graph neighbourhood as PNG bytes: a tree with the label (red) on top and
    the WordNet paths down to the seen classes (blue, with their cosine), one row per step.

    Drawn on a figure of its own (no pyplot state), so several threads may draw at once.
    """
    import networkx as nx
    from matplotlib.figure import Figure

    g = nx.Graph()
    target = result["synset"]
    g.add_node(target)
    weight = {}
    for s in result["similar_seen"]:
        nodes = s["path"] or [s["synset"]]
        g.add_nodes_from(nodes)
        g.add_edges_from(zip(nodes, nodes[1:]))
        weight[s["synset"]] = s["similarity"]
    pos, width = _tree_positions(g, target, list(weight))
    depth = -min(py for _, py in pos.values())
    fig = Figure(figsize=(max(6.0, 2.2 * width), max(3.0, 0.5 * depth + 1.5)))
    ax = fig.add_subplot()
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color="gray")
    colour = ["tab:red" if n == target else "tab:blue" if n in weight else "lightgray" for n in g.nodes]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colour, node_size=120)
    for node, xy in pos.items():  # names beside the nodes, not on them, so they never cover each other
        text = f"{node}  {weight[node]:+.2f}" if node in weight else node
        ax.annotate(text, xy, xytext=(7, 0), textcoords="offset points", va="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xlim(-0.5, width - 0.2)
    ax.set_title(f"{result['label']}: the seen classes (blue, cosine of their real row) and their WordNet paths",
                 fontsize=10)
    ax.axis("off")
    return figure_png(fig, dpi=110)


def check_png_path(path: str | Path) -> Path:
    """``path`` as a Path, after checking that it names a ``.png`` file (the drawing is PNG data).

    Raises:
        InputError: If its suffix is not ``.png`` (in any case).
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        fix = f"give a file name ending in .png, e.g. {path.with_suffix('.png') if path.name else 'why.png'}"
        raise InputError(f"cannot draw to {path}: the drawing is PNG data; {fix}",
                         cli_message=f"--png {path}: the drawing is PNG data; {fix}")
    return path


def explain_png(result: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`explanation_png`'s drawing to ``path`` (atomically).

    Raises:
        InputError: If ``path`` does not end in ``.png``.
    """
    path = check_png_path(path)
    write_bytes(path, explanation_png(result))
    return path
