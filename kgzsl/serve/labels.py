"""Label suggestions for autocompletion: the graph's lemma names, synset names and wnids matching a prefix.

The suggestions come from the classifier's own node list (added concepts included), never from
WordNet, so a keystroke costs a binary search and no lock. Each suggestion carries the text to put
in a candidate list: the word itself when it names one node of the graph, else the synset name,
which picks that node exactly (a word naming several nodes resolves to one of them, by the rules
of :mod:`kgzsl.inference.labels`).

Example:
    >>> index = LabelIndex(clf.wnids, clf.names, clf.lemmas)
    >>> index.suggest("tabb", limit=2)
    [{'label': 'tabby', 'synset': 'tabby.n.01', 'wnid': 'n02123045', 'lemma': 'tabby'}, ...]
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Collection, Sequence

__all__ = ["LabelIndex"]


def _words(name: str) -> str:
    return name.replace("_", " ").strip().lower()


class LabelIndex:
    """Prefix search over the lemma names, synset names and wnids of a graph's nodes.

    Args:
        wnids: Node ids in row order.
        names: Synset names in row order.
        lemmas: Lemma names per node (``golden_retriever``).
        preferred: Nodes suggested before the others after the exact matches: the backbone's own
            classes, which ``predict`` scores with their real rows (``"golden"`` → golden retriever
            before goldeneye and goldenrod).
    """

    def __init__(self, wnids: Sequence[str], names: Sequence[str], lemmas: Sequence[Sequence[str]],
                 preferred: Collection[int] = ()) -> None:
        self._wnids = list(wnids)
        self._names = list(names)
        self._preferred = frozenset(preferred)
        keys: set[tuple[str, int, str]] = set()  # (search key, node, lemma shown)
        for i, node_lemmas in enumerate(lemmas):
            for lemma in node_lemmas:
                keys.add((_words(lemma), i, lemma.replace("_", " ")))
            keys.add((self._names[i].lower(), i, _lemma_of(self._names[i])))
            keys.add((self._wnids[i].lower(), i, _lemma_of(self._names[i])))
        self._keys = sorted(keys)
        self._search = [k for k, _, _ in self._keys]
        self._nodes_per_word = Counter(_words(lemma) for node_lemmas in lemmas for lemma in set(node_lemmas))

    def __len__(self) -> int:
        return len(self._keys)

    def suggest(self, query: str, limit: int = 10) -> list[dict[str, str]]:
        """Nodes whose lemma, synset name or wnid starts with ``query`` (case and ``_`` ignored).

        Exact matches come first (nodes named after the word before the others), then the
        ``preferred`` nodes, then shorter names among the first matches in alphabetical order; one
        suggestion per node.

        Args:
            query: What has been typed so far.
            limit: At most this many suggestions.

        Returns:
            ``[{"label", "synset", "wnid", "lemma"}]``: ``label`` is what to put in a candidate
            list (the word, or the synset name when the word names several nodes).
        """
        prefix = _words(query)
        if not prefix or limit < 1:
            return []
        start = bisect.bisect_left(self._search, prefix)
        matches = []
        for key, node, lemma in self._keys[start:]:
            if not key.startswith(prefix):
                break
            # exact matches first; among them the nodes named after the word (coffee.n.01 before chocolate.n.03)
            named = _words(_lemma_of(self._names[node])) == key
            matches.append((key != prefix, not named, node not in self._preferred, len(key), key,
                            self._names[node], node, lemma))
            if len(matches) >= 50 * limit:  # enough to rank: a one-letter prefix matches thousands
                break
        out, seen = [], set()
        for *_, node, lemma in sorted(matches):
            if node in seen:
                continue
            seen.add(node)
            word = _words(lemma)
            label = lemma if self._nodes_per_word.get(word, 0) == 1 else self._names[node]
            out.append({"label": label, "synset": self._names[node], "wnid": self._wnids[node], "lemma": lemma})
            if len(out) == limit:
                break
        return out


def _lemma_of(synset_name: str) -> str:
    """``golden_retriever.n.01`` → ``golden retriever`` (the name's word, for display)."""
    return synset_name.rsplit(".", 2)[0].replace("_", " ") if synset_name.count(".") >= 2 else synset_name
