"""Where a new concept's nodes come from: its WordNet synset and missing hypernyms, or a custom node.

:func:`pick_synset` reads a word, synset name or wnid as a WordNet noun (refusing ambiguous words
with their senses listed); :class:`NodeExtension` collects the new nodes and edges (a synset with
every hypernym the graph lacks, breadth-first as the graph build does) before the graph is rebuilt
once; :func:`resolve_parent` and :func:`custom_id` place a word WordNet does not know.
:mod:`kgzsl.inference.concepts` turns the extension into predicted rows.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from kgzsl.errors import InputError
from kgzsl.graph.taxonomy import custom_id, label_key, noun_senses
from kgzsl.graph.wordnet import SYNSET_RE, WNID_RE, hypernym_closure, wnid_of
from kgzsl.inference.labels import LabelError, close_words
from kgzsl.inference.senses import WordSenses

__all__ = ["ConceptError", "AmbiguousConceptError", "NodeExtension", "pick_synset", "resolve_parent", "custom_id",
           "WNID_RE", "SYNSET_RE"]

logger = logging.getLogger(__name__)


class ConceptError(InputError):
    """A concept cannot be added; the message says why and what to give instead."""


class AmbiguousConceptError(ConceptError):
    """A word has several WordNet noun senses; ``senses`` lists ``(synset name, wnid, gloss)``."""

    def __init__(self, word: str, senses: list[tuple[str, str, str]], example: str | None = None) -> None:
        self.word = word
        self.senses = senses
        example = example or senses[0][0]  # the sense a photo label most likely means, where the caller knows it
        listed = "; ".join(f"{name} ({wnid}): {gloss}" for name, wnid, gloss in senses)
        problem = f"{word!r} is ambiguous: it has {len(senses)} WordNet noun senses: {listed}. "
        super().__init__(problem + f"Pick one with sense=, e.g. add_concept({word!r}, sense={example!r})",
                         cli_message=problem + f"Pick one with --sense (in a --file: 'sense:'), "
                         f"e.g. --sense {example}")


def pick_synset(wn: Any, word: str, sense: str | None, known: set[str]) -> Any | None:
    """The WordNet noun synset meant by ``word`` (or ``sense``); None if WordNet does not know the word.

    Raises:
        AmbiguousConceptError: If the word has several noun senses and none (or several) is already known.
        ConceptError: If ``sense`` names no noun synset, or one that is not a sense of ``word`` (a WordNet noun).
    """
    choice = (sense or "").strip() or word.strip()
    if sense and not (WNID_RE.match(choice) or SYNSET_RE.match(choice)):
        raise ConceptError(f"sense={sense!r} must be a synset name ('crane.n.04') or a wnid ('n03126707')",
                           cli_message=f"--sense {sense!r} must be a synset name (crane.n.04) or a wnid (n03126707)")
    try:
        synsets = noun_senses(wn, choice)
    except InputError as exc:
        raise ConceptError(str(exc)) from None
    if sense and synsets and not (WNID_RE.match(word.strip()) or SYNSET_RE.match(word.strip())):
        try:
            own = noun_senses(wn, word)
        except InputError:
            own = []
        if own and synsets[0] not in own:  # "heron" with sense dog.n.01 changed nothing, silently
            listed = ", ".join(s.name() for s in own[:8])
            raise ConceptError(f"{synsets[0].name()} is not a sense of {word!r}: its noun senses are {listed}; give "
                               f"one of them as sense=, or leave sense out",
                               cli_message=f"{synsets[0].name()} is not a sense of {word!r}: its noun senses are "
                               f"{listed}; give one of them as --sense (in a --file: 'sense:'), or leave it out")
    if len(synsets) <= 1:
        return synsets[0] if synsets else None
    in_graph = [s for s in synsets if wnid_of(s) in known]
    if len(in_graph) == 1:
        return in_graph[0]
    key = label_key(choice)  # the example is the sense a photo label would get, were none of them a node
    likely = WordSenses(key, label_key(wn.morphy(key, "n") or key), synsets, index={}, seen=(), requested=(),
                        grounded=lambda: ()).to_add()
    raise AmbiguousConceptError(word, [(s.name(), wnid_of(s), s.definition()) for s in synsets],
                                example=likely.name() if likely is not None else None)


class NodeExtension:
    """New nodes and edges collected before the graph is rebuilt once."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.index = dict(graph.index)
        self.wnids: list[str] = []
        self.names: list[str] = []
        self.lemmas: list[list[str]] = []
        self.glosses: list[str] = []
        self.texts: list[str | None] = []  # None: the usual node text
        self.edges: list[tuple[int, int, int]] = []

    def add(self, wnid: str, name: str, lemmas: list[str], gloss: str, text: str | None = None) -> int:
        """Append one node; ``text`` replaces its usual node text. Returns its index."""
        self.index[wnid] = len(self.index)
        self.wnids.append(wnid)
        self.names.append(name)
        self.lemmas.append(lemmas)
        self.glosses.append(gloss)
        self.texts.append(text)
        return self.index[wnid]

    def add_synset(self, synset: Any) -> int:
        """Node of ``synset``, adding it and its missing hypernyms (breadth-first, like the graph build)."""
        if wnid_of(synset) in self.index:
            return self.index[wnid_of(synset)]
        rel_of = {name: i for i, name in enumerate(self.graph.relations)}
        first = self.add(wnid_of(synset), synset.name(), synset.lemma_names(), synset.definition())
        ancestors, edges = hypernym_closure([synset], self.index)
        for par in ancestors:  # in the order hypernym_closure numbered them
            self.add(wnid_of(par), par.name(), par.lemma_names(), par.definition())
        self.edges += [(child, parent, rel_of.get(rel, 0)) for child, parent, rel in edges]
        return first


def _usual(wn: Any, word: str, name: str) -> bool:
    """Whether synset ``name`` is the word's usual sense in WordNet's tagged corpus, by
    :meth:`WordSenses.usual <kgzsl.inference.senses.WordSenses.usual>`: "cat" as a parent is the
    feline without a word said."""
    if wn is None:
        return False
    key = label_key(word)
    try:
        senses = WordSenses(key, label_key(wn.morphy(key, "n") or key), wn.synsets(key, "n"), {}, (), (), tuple)
        return senses.usual(wn.synset(name))
    except Exception:  # a reader without counts, or a name it does not know: say which sense was used
        return False


def _gloss(wn: Any, name: str) -> str:
    """WordNet's definition of a synset name, or "" (no WordNet, or a class of one's own)."""
    try:
        return wn.synset(name).definition() if wn is not None else ""
    except Exception:  # nltk raises WordNetError / ValueError for names it does not know
        return ""


def resolve_parent(clf: Any, ext: NodeExtension, wn: Any, spec: str, others: Iterable[str] = ()) -> int:
    """Node index of a parent given as a word, synset name or wnid; WordNet parents are attached if missing.

    Args:
        clf: The classifier (its label resolver knows the graph's nodes).
        ext: The nodes being added; a WordNet parent missing from the graph is added to it.
        wn: The WordNet reader, or None.
        spec: The parent as given.
        others: Label keys (:func:`~kgzsl.graph.taxonomy.label_key`) of other names a parent may
            be (the other entries of the same taxonomy), suggested with the graph's lemma names.

    Raises:
        AmbiguousConceptError: If it is a WordNet noun of several senses, none of them a node.
        ConceptError: If the parent is neither a node nor a WordNet noun (the close names suggested,
            as for an unknown label).
    """
    try:
        found = clf.resolver.resolve(spec)
        if found.alternatives and found.label not in (found.synset, found.wnid) and not _usual(wn, spec, found.synset):
            # a word of several senses: a parent is fixed once, no image picks it later
            logger.warning("parent %r is ambiguous: using %s (%s); to use another sense, write the parent as its "
                           "synset name (%s)", spec, found.synset, _gloss(wn, found.synset),
                           ", ".join(found.alternatives[:4]))
        return found.index
    except LabelError as exc:
        if wn is None:
            raise ConceptError(f"parent {spec!r}: {exc}") from None
        synset = pick_synset(wn, spec, None, set(ext.index))
        if synset is None:
            close = close_words(label_key(spec), list(dict.fromkeys([*clf.resolver.by_lemma, *others])))
            hint = f"did you mean {', '.join(c.replace('_', ' ') for c in close)}? Else give" if close else "give"
            raise ConceptError(f"parent {spec!r} is neither a node of the graph nor a WordNet noun; {hint} a "
                               "word, synset name or wnid the graph or WordNet knows") from None
        return ext.add_synset(synset)
