"""Resolve candidate labels (wnids, synset names or free text) to graph nodes.

Free text goes through WordNet: ``"golden retriever"`` → ``golden_retriever.n.01``; plurals and
inflections are handled by WordNet's morphology (``"cats"`` → ``cat``). An ambiguous word takes
the noun sense present in the graph whose lemma is most frequent in WordNet's sense-tagged
corpus (``cntlist``), ties broken by WordNet's sense order, and the result records the synset it
used and the other senses it passed over.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["ResolvedLabel", "LabelError", "LabelResolver"]

logger = logging.getLogger(__name__)

_WNID = re.compile(r"^n\d{8}$")
_SYNSET_NAME = re.compile(r"^.+\.n\.\d+$")


class LabelError(ValueError):
    """A candidate label cannot be resolved to a graph node; the message says why and what to do."""


@dataclass(frozen=True)
class ResolvedLabel:
    """A label and the graph node it resolved to."""

    label: str
    index: int
    wnid: str
    synset: str
    alternatives: tuple[str, ...] = field(default=())


class LabelResolver:
    """Maps labels to node indices of one graph.

    Args:
        wnids: Node ids in row order.
        names: Synset names (``dog.n.01``) in row order.
        lemmas: Lemma names per node.
        wordnet: Zero-argument callable returning a WordNet reader; called only when a free-text
            label needs it. If it raises, labels are matched against the nodes' lemma names only.
    """

    def __init__(self, wnids: Sequence[str], names: Sequence[str], lemmas: Sequence[Sequence[str]],
                 wordnet: Callable[[], Any] | None = None) -> None:
        self.wnids = list(wnids)
        self.names = list(names)
        self.index = {w: i for i, w in enumerate(self.wnids)}
        self.by_name = {n: i for i, n in enumerate(self.names)}
        self.by_lemma: dict[str, list[int]] = {}
        for i, ls in enumerate(lemmas):
            for lemma in ls:
                self.by_lemma.setdefault(_norm(lemma), []).append(i)
        self._wordnet = wordnet

    def resolve(self, label: str) -> ResolvedLabel:
        """Resolve one label.

        Raises:
            LabelError: For an empty label, a wnid or synset not in the graph, or an unknown word
                (with close matches suggested).
        """
        text = str(label).strip()
        if not text:
            raise LabelError("empty label: give a word ('cat'), a synset name ('cat.n.01') or a wnid ('n02121808')")
        if _WNID.match(text):
            if text not in self.index:
                raise LabelError(f"wnid {text} is not a node of this graph; rebuild the graph with it "
                                 "(kgzsl build-graph --wnids ...)")
            return self._result(text, self.index[text])
        if _SYNSET_NAME.match(text) and text in self.by_name:
            return self._result(text, self.by_name[text])
        return self._resolve_word(text)

    def resolve_all(self, labels: Sequence[str]) -> list[ResolvedLabel]:
        """Resolve a candidate list; rejects an empty list and labels that name the same node.

        Raises:
            LabelError: Listing every label that failed, or the clashing pairs.
        """
        if isinstance(labels, str):
            labels = [s for s in labels.split(",")]
        if not labels:
            raise LabelError("the candidate label list is empty; give at least one label")
        out, errors, seen = [], [], {}
        for label in labels:
            try:
                res = self.resolve(label)
            except LabelError as exc:
                errors.append(str(exc))
                continue
            if res.index in seen:
                errors.append(f"labels {seen[res.index]!r} and {label!r} both resolve to {res.synset} "
                              f"({res.wnid}); keep one of them")
                continue
            seen[res.index] = label
            out.append(res)
        if errors:
            raise LabelError("; ".join(errors))
        return out

    def _result(self, label: str, index: int, alternatives: tuple[str, ...] = ()) -> ResolvedLabel:
        return ResolvedLabel(label=label, index=index, wnid=self.wnids[index], synset=self.names[index],
                             alternatives=alternatives)

    def _resolve_word(self, text: str) -> ResolvedLabel:
        key = _norm(text)
        wn = None
        if self._wordnet is not None:
            try:
                wn = self._wordnet()
            except Exception as exc:  # WordNet missing: fall back to the graph's own lemma names
                logger.warning("WordNet unavailable (%s); matching labels to lemma names only", exc)
                self._wordnet = None
        if wn is not None:
            synsets = wn.synsets(key, pos="n")
            in_graph = [s for s in synsets if f"n{s.offset():08d}" in self.index]
            if in_graph:
                def frequency(s: Any) -> int:
                    return sum(lem.count() for lem in s.lemmas() if _norm(lem.name()) in (key, _norm(wn.morphy(key, "n") or key)))

                ranked = sorted(in_graph, key=lambda s: -frequency(s))  # stable: sense order breaks ties
                best = ranked[0]
                others = tuple(s.name() for s in ranked[1:])
                if others:
                    logger.debug("label %r is ambiguous; using %s (%s) over %s", text, best.name(),
                                best.definition(), ", ".join(others))
                return self._result(text, self.index[f"n{best.offset():08d}"], others)
            if synsets:
                senses = "; ".join(f"{s.name()} ({s.definition()})" for s in synsets[:5])
                raise LabelError(f"{text!r} is a WordNet noun but none of its senses is a node of this graph: "
                                 f"{senses}. Rebuild the graph with its wnid, e.g. n{synsets[0].offset():08d}")
        if key in self.by_lemma:
            nodes = self.by_lemma[key]
            return self._result(text, nodes[0], tuple(self.names[i] for i in nodes[1:]))
        close = difflib.get_close_matches(key, list(self.by_lemma), n=5, cutoff=0.75)
        hint = f"; did you mean {', '.join(c.replace('_', ' ') for c in close)}?" if close else ""
        raise LabelError(f"unknown label {text!r}: not a WordNet noun nor a lemma of this graph's nodes{hint}")


def _norm(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " - ").split()).replace("_-_", "-")
