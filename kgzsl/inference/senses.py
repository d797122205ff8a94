"""Which noun sense of a word a photo label means.

A word has several WordNet noun senses; :class:`WordSenses` ranks those that are nodes of the
graph and keeps the first, preferring the senses a photo can show:

1. senses the backbone has seen (one of its classes or an ancestor of one: ``"seal"`` is the
   animal, an ancestor of the sea lion, not the wax), if they are physical things or named after
   the word (``"match"`` is the matchstick, not the peer that is an ancestor of the backbone's
   ballplayer and that "match" is a synonym of);
2. then senses that are physical things (WordNet's animal, artifact, food, plant and object
   lexicographer files) before people, body parts, substances and places, and those before
   abstract senses (``"TV"`` is the receiver, not the medium; ``"palm"`` the tree, not the hand).
   A person counts as a thing where it is the word's **usual** sense (``"man"`` is the adult male,
   not the genus *Homo*; ``"soldier"`` not the ant): the sense that holds more than half of the
   word's uses in WordNet's sense-tagged corpus, and at least :data:`MIN_USES` of them. Within
   a kind, a word written with a capital takes the senses it names as written first (``"Earth"``
   is the planet, whose lemma is ``Earth``, not dry land, ``earth``);
3. then the word's frequency in that sense in the tagged corpus (``cntlist``: ``"fork"`` is the
   cutlery, not the pitchfork; ``"book"`` the bound pages, not a book of tickets);
4. then senses named after the word before those where it is a synonym (``"cake"`` is the baked
   cake, not the patty that is also called a cake);
5. then the backbone's own classes, then the graph's requested classes (e.g. ImageNet-21K's,
   which have images), before the ancestors added only to connect them (``"red fox"`` is
   ImageNet's, not the New World fox), then sense order.

Other senses of the first rank and kind (``"crane"``: the machine and the bird, both ImageNet-1k
classes) stay candidates too, unless the best one is the word's usual sense (``"cat"`` is the
feline of 18 of the word's 18 tagged uses, not also the big cat; ``"car"`` the automobile, not the
railway car), or the best one is named after the word and the other only lists it as a synonym
(``"cutlery"`` is the knives, forks and spoons, not also any cutting tool, ``cutter.n.06``, whose
seen hatchets and cleavers would win it photos of other tools). The other way round, where the
best sense only lists the word as a synonym and no sense is the word's usual one, the physical
senses named after the word stay candidates (``"hedgehog"``: ImageNet-1k's porcupine class, also
called hedgehog, and the hedgehog itself; ``"pike"``: the fish and the weapon beside the
expressway). The word's usual sense stays a candidate where it is a physical thing the backbone
has not seen (``"mouse"``: the computer mouse, an ImageNet-1k class, and the animal; ``"jacket"``:
a book jacket's ancestor, and the coat). The classifier scores the label by the sense that fits
the image best.

:meth:`WordSenses.to_add` names the sense to add where none is a node (``"moon"``: the Earth's
satellite, not the lunar month), by the same preferences: a physical thing, then the most used
sense, then one named after the word, then WordNet's order.
:meth:`WordSenses.missing` names a sense to add to the graph instead of the best one present,
where the graph can grow: the word's usual sense when the word is never used in the best present
sense and the backbone has not seen it (``"sink"``: the plumbing fixture, not a sinkhole), or a
physical thing named after the word when the graph has no physical sense of it at all (``"tart"``:
the pastry).

Example:
    >>> senses = WordSenses("crane", "crane", wn.synsets("crane", "n"), index, seen, requested, lambda: grounded)
    >>> senses.best.name(), [s.name() for s in senses.also]
    ('crane.n.04', ['crane.n.05'])
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Mapping

from kgzsl.graph.taxonomy import label_key

__all__ = ["MAX_SENSES", "MIN_USES", "WordSenses"]

#: lexicographer files of things a photo shows, then of what it may show; other senses come last
_THINGS = frozenset({"noun.animal", "noun.artifact", "noun.food", "noun.plant", "noun.object"})
_VISIBLE = frozenset({"noun.person", "noun.body", "noun.substance", "noun.location", "noun.Tops"})
#: senses a label keeps for the image to choose from, the best one included
MAX_SENSES = 4
#: tagged uses a sense needs to be a word's usual sense: with fewer, the corpus says too little
MIN_USES = 3


def wnid(synset: Any) -> str:
    """The ``n########`` id of a noun synset."""
    return f"n{synset.offset():08d}"


class WordSenses:
    """The noun senses of one word, ranked as a photo label (see the module).

    Args:
        key: The word as WordNet knows it (a label key: lower case, ``_`` for spaces).
        base: Its base form (``"cats"`` → ``cat``).
        synsets: Its noun synsets, in WordNet's order.
        index: Node of each wnid of the graph.
        seen: Nodes that are backbone classes.
        requested: Nodes of the classes the graph was built for.
        grounded: Gives the nodes the backbone has seen, its classes and their ancestors (called only
            when a word has several senses in the graph, or one that may be replaced).

    Attributes:
        present: The senses that are nodes, best first (empty: none is).
        best: The first of them (None when none is a node).
        also: Other present senses the image may choose instead (at most ``MAX_SENSES - 1``).
    """

    def __init__(self, key: str, base: str, synsets: list[Any], index: Mapping[str, int], seen: Collection[int],
                 requested: Collection[int], grounded: Callable[[], Collection[int]], written: str = "") -> None:
        self.key, self.base, self.synsets = key, base, synsets
        self.written = written.strip().replace(" ", "_")
        self._index, self._seen, self._requested, self._grounded = index, seen, requested, grounded
        self.uses = sum(self.frequency(s) for s in synsets)
        present = [s for s in synsets if wnid(s) in index]
        self.present = sorted(present, key=self.rank) if len(present) > 1 else present  # stable: sense order
        self.best = self.present[0] if self.present else None
        top = self.rank(self.best)[:2] if len(present) > 1 else None
        settled = self.best is not None and self.usual(self.best)  # the corpus says what the word means
        named = self.best is not None and self.named(self.best)  # then a sense the word only names too is no peer
        self.also = tuple(s for s in self.present[1:]
                          if (self.rank(s)[:2] == top == (0, 0) and not settled and (self.named(s) or not named))
                          or (top == (0, 0) and s.lexname() in _THINGS and self.usual(s))
                          or (top is not None and top[1] == 0 and not settled and s.lexname() in _THINGS
                              and self.named(s) and not named))[:MAX_SENSES - 1]

    def frequency(self, synset: Any) -> int:
        """The word's uses in this sense in WordNet's tagged corpus."""
        return sum(lem.count() for lem in synset.lemmas() if label_key(lem.name()) in (self.key, self.base))

    def usual(self, synset: Any) -> bool:
        """Whether this is the word's usual sense: over half of its tagged uses, and at least :data:`MIN_USES`."""
        f = self.frequency(synset)
        return f >= MIN_USES and 2 * f > self.uses

    def named(self, synset: Any) -> bool:
        """Whether the synset is named after the word (``cake.n.03`` for "cake"; not ``patty.n.01``)."""
        return label_key(synset.name().rsplit(".", 2)[0]) in (self.key, self.base)

    def proper(self, synset: Any) -> bool:
        """Whether the word, written with a capital, is a lemma of the synset as written: a name
        (``"Earth"`` the planet, whose lemma is ``Earth``; not dry land, whose lemma is ``earth``)."""
        w = self.written
        return w != w.lower() and any(lem.name() == w for lem in synset.lemmas())

    def kind(self, synset: Any) -> int:
        """0: a physical thing (or a person that is the word's usual sense); 1: may be seen; 2: abstract."""
        lex = synset.lexname()
        if lex in _THINGS or (lex == "noun.person" and self.usual(synset)):
            return 0
        return 1 if lex in _VISIBLE else 2

    def rank(self, synset: Any) -> tuple[int, int, int, int, int, int]:
        """Sort key of a sense that is a node: smaller is better."""
        node = self._index[wnid(synset)]
        standing = 0 if node in self._seen else 1 if node in self._requested else 2
        kind = self.kind(synset)
        seen = node in self._grounded() and (kind == 0 or self.named(synset))
        return int(not seen), kind, int(not self.proper(synset)), -self.frequency(synset), int(not self.named(synset)), \
            standing

    def to_add(self) -> Any | None:
        """The sense to add to the graph when none is a node, or None when the word has no noun sense.

        The first in WordNet's order among the physical things (or the usual person), then the most
        used in the tagged corpus, then those named after the word: ``"moon"`` is the Earth's
        satellite (noun.object, 30 uses), not the lunar month or the religious leader.
        """
        if not self.synsets:
            return None
        return min(self.synsets, key=lambda s: (self.kind(s), int(not self.proper(s)), -self.frequency(s),
                                                int(not self.named(s))))

    def missing(self) -> tuple[Any, str] | None:
        """A sense that is not a node and should be added instead of :attr:`best`, and why; or None.

        ``(sense, "proper")``: a physical thing the word names as written with a capital
        (``"Earth"``: the planet), when the best present sense is not one. ``(sense, "usual")``:
        the word's usual sense (a thing or a person), when the word is never
        used in the best present sense and the backbone has not seen that one. ``(sense, "thing")``:
        when no present sense is a physical thing, the first physical thing named after the word.
        """
        best = self.best
        if best is None:
            return None
        absent = [s for s in self.synsets if wnid(s) not in self._index]
        named = [s for s in absent if self.proper(s) and self.kind(s) == 0]
        if named and not self.proper(best):  # "Earth", written with a capital: the planet, even if dry land is seen
            return named[0], "proper"
        usual = [s for s in absent if self.usual(s) and (s.lexname() in _THINGS or s.lexname() == "noun.person")]
        if usual and self.frequency(best) == 0:
            choice, why = usual[0], "usual"
        elif self.kind(best) != 0:
            choice, why = next((s for s in absent if s.lexname() in _THINGS and self.named(s)), None), "thing"
        else:
            return None
        return None if choice is None or self._index[wnid(best)] in self._grounded() else (choice, why)
