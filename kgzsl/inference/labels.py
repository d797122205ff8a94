"""Resolve candidate labels (wnids, synset names or free text) to graph nodes.

Names of your own classes (nodes whose id is not a wnid: taxonomy entries, added concepts) come
first: ``"coffee maker"`` is your node when you added one by that name. Other free text goes
through WordNet: ``"golden retriever"`` → ``golden_retriever.n.01``; plurals and inflections are
handled by WordNet's morphology (``"cats"`` → ``cat``), an open compound that WordNet writes
closed is found closed (``"wine glass"`` → ``wineglass.n.01``, ``"cell phone"`` → the
cellphone), and a leading article is dropped (``"a cat"``; a prompt such as ``"a photo of a
cat"`` gets an error that names the class to give). An ambiguous word takes the noun sense that
best names something a photo can show (:mod:`kgzsl.inference.senses`: ``"seal"`` is the animal,
``"TV"`` the receiver, ``"man"`` the adult male); senses equally plausible stay candidates for the
image to choose (:attr:`ResolvedLabel.senses`), and a classifier that can grow its graph adds a
word's usual sense where the graph lacks it (``"sink"``: the plumbing fixture, not a sinkhole; see
``can_add``).
"""

from __future__ import annotations

import difflib
import logging
import re
import shlex
from collections import Counter
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Collection, Sequence

from kgzsl.errors import InputError
from kgzsl.graph.taxonomy import label_key
from kgzsl.graph.wordnet import SYNSET_RE, WNID_RE
from kgzsl.inference.senses import WordSenses, wnid as wnid_of

__all__ = ["ResolvedLabel", "LabelError", "NotInGraphError", "LabelResolver"]

logger = logging.getLogger(__name__)
_EMPTY_FIX = "give a word ('cat'), a synset name ('cat.n.01') or a wnid ('n02121620')"

_OTHER_POS_ID = re.compile(r"^[vasr]\d{8}$")
_OTHER_POS_NAME = re.compile(r"^.+\.[vasr]\.\d+$")
_POS = {"v": "verb", "a": "adjective", "s": "adjective satellite", "r": "adverb"}
_ARTICLE = re.compile(r"^(?:a|an|the)_(?=.)")
#: a CLIP-style prompt given as a label: "a photo of a cat"
_PROMPT = re.compile(r"^(?:(?:a|an|the)_)?(?:photo|picture|image|drawing|painting|sketch)_of_(?:(?:a|an|the)_)?(.+)$")


class LabelError(InputError):
    """A candidate label cannot be resolved to a graph node; the message says why and what to do."""


class NotInGraphError(LabelError):
    """Labels that are WordNet nouns (words, synset names or wnids) but not nodes of the graph.

    Attributes:
        labels: The labels concerned.
    """

    def __init__(self, message: str, labels: Sequence[str]) -> None:
        super().__init__(message)
        self.labels = list(labels)


@dataclass(frozen=True)
class ResolvedLabel:
    """A label and the graph node it resolved to.

    ``alternatives`` names the senses passed over; ``senses`` holds the node indices of other
    senses just as plausible for a photo, which the classifier also scores (the best one counts).
    ``usual`` says the sense is the word's usual one by WordNet's tagged corpus ("cat": the feline,
    18 of 18 uses), which the list's other labels never replace.
    """

    label: str
    index: int
    wnid: str
    synset: str
    alternatives: tuple[str, ...] = field(default=())
    senses: tuple[int, ...] = field(default=())
    usual: bool = False


class LabelResolver:
    """Maps labels to node indices of one graph.

    Args:
        wnids: Node ids in row order.
        names: Synset names (``dog.n.01``) in row order.
        lemmas: Lemma names per node.
        wordnet: Zero-argument callable returning a WordNet reader; called only when a free-text
            label needs it. If it raises, labels are matched against the nodes' lemma names only.
        seen: Node indices of the backbone's own classes (preferred senses).
        requested: Node indices of the graph's requested classes (None: every node).
        grounded: Zero-argument callable giving the node indices that are backbone classes or their
            ancestors (called once, when a word is ambiguous); None: the ``seen`` nodes only.
        can_add: Zero-argument callable saying whether a missing sense can be added as a node now
            (a classifier that adds WordNet nouns on first use); then a word whose meaning as a
            photo label is missing from the graph (its usual sense, or a physical thing where the
            graph has none) raises :class:`NotInGraphError` naming that sense
            (:meth:`kgzsl.inference.senses.WordSenses.missing`). None: never.
    """

    def __init__(self, wnids: Sequence[str], names: Sequence[str], lemmas: Sequence[Sequence[str]],
                 wordnet: Callable[[], Any] | None = None, seen: Collection[int] = (),
                 requested: Collection[int] | None = None,
                 grounded: Callable[[], Collection[int]] | None = None,
                 can_add: Callable[[], bool] | None = None) -> None:
        self.wnids = list(wnids)
        self.names = list(names)
        self.index = {w: i for i, w in enumerate(self.wnids)}
        self.by_name = {n: i for i, n in enumerate(self.names)}
        self.by_lemma: dict[str, list[int]] = {}
        for i, ls in enumerate(lemmas):
            for lemma in ls:
                self.by_lemma.setdefault(label_key(lemma), []).append(i)
        # your own classes (ids that are neither wnids nor ConceptNet URIs: taxonomy entries, added
        # concepts, hand-built graphs) answer to their names and aliases before any WordNet sense
        self.own: dict[str, list[int]] = {}
        for i, (wnid, ls) in enumerate(zip(self.wnids, lemmas)):
            if not (WNID_RE.match(wnid) or wnid.startswith("/c/")):
                for lemma in ls:
                    self.own.setdefault(label_key(lemma), []).append(i)
        self._wordnet = wordnet
        self._wordnet_failed = ""  # why WordNet could not be loaded, once it failed
        self.seen = frozenset(seen)
        self.requested = frozenset(range(len(self.wnids))) if requested is None else frozenset(requested)
        self._grounded_of = grounded
        self._grounded: frozenset[int] | None = None
        self._can_add = can_add
        self._told: set[str] = set()  # labels whose sense choice was logged already (a server resolves them often)

    def resolve(self, label: str) -> ResolvedLabel:
        """Resolve one label.

        Raises:
            LabelError: For an empty label, a wnid or synset not in the graph, or an unknown word
                (with close matches suggested).
        """
        text = str(label).strip()
        if not text:
            raise LabelError(f"empty label: {_EMPTY_FIX}")
        if text in self.index:  # any node id, WordNet or custom
            return self._result(text, self.index[text])
        if text in self.by_name:
            return self._result(text, self.by_name[text])
        own = self.own.get(label_key(text))
        if own:
            return self._result(text, own[0], tuple(self.names[i] for i in own[1:]))
        if text != text.lower() and (WNID_RE.match(text.lower()) or SYNSET_RE.match(text.lower())):
            given, text = text, text.lower()  # "N02121620", "Cat.N.01": WordNet's ids are lower case
            if text in self.index or text in self.by_name:
                return self._result(given, self.index.get(text, self.by_name.get(text)))
        if WNID_RE.match(text):
            message = self._missing_wnid(text)
            raise NotInGraphError(message, [text]) if "is not a node of this graph" in message else LabelError(message)
        if _OTHER_POS_ID.match(text) or _OTHER_POS_NAME.match(text):
            pos = _POS[text[0] if _OTHER_POS_ID.match(text) else text.rsplit(".", 2)[1]]
            raise LabelError(f"{text!r} names a WordNet {pos}, but classes are noun synsets; give a noun "
                             "('cat'), a noun synset name ('cat.n.01') or a noun wnid ('n02121620')")
        if SYNSET_RE.match(text):
            index = self._synset_node(text)
            if index is not None:
                return self._result(text, index)
        plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        if plain != text and plain.isascii():  # "café", "Pokémon": WordNet's words carry no accents
            try:
                return replace(self._resolve_word(plain), label=text)
            except LabelError:
                pass  # the error names the word as given
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
        out, errors, seen, missing, absent = [], [], {}, [], []
        blank = [n for n, label in enumerate(labels, 1) if not str(label).strip()]
        cli_errors: list[str] = []
        if blank:  # where: "a, b,,c" has an empty third label
            errors.append(f"empty label (label{'s' if len(blank) > 1 else ''} {', '.join(map(str, blank))} of "
                          f"{len(labels)}: two commas in a row, or one at an end?): {_EMPTY_FIX}")
            cli_errors.append(errors[-1])
        for label in labels:
            if not str(label).strip():
                continue
            try:
                res = self.resolve(label)
            except NotInGraphError as exc:
                absent.append((label, str(exc)))
                missing.extend(exc.labels)
                continue
            except LabelError as exc:
                errors.append(str(exc))
                cli_errors.append(exc.cli_text())
                continue
            if res.index in seen:
                node = res.synset if res.synset == res.wnid else f"{res.synset} ({res.wnid})"
                other = f", or name another sense of {label!r} by its synset ({', '.join(res.alternatives[:3])})" \
                    if res.alternatives else ""
                errors.append(f"labels {seen[res.index]!r} and {label!r} both resolve to {node}; keep one of them"
                              f"{other}")
                cli_errors.append(errors[-1])
                continue
            seen[res.index] = label
            out.append(res)
        if errors:  # what adding concepts cannot fix first; the labels it can fix named, without advice for them
            also = (f"; also not nodes of this graph yet: {', '.join(repr(label) for label, _ in absent)} "
                    "(predict adds WordNet nouns on first use)") if absent else ""
            # " , " has two empty labels: one message
            raise LabelError("; ".join(dict.fromkeys(errors)) + also,
                             cli_message="; ".join(dict.fromkeys(cli_errors)) + also)
        if absent:
            raise NotInGraphError("; ".join(dict.fromkeys(m for _, m in absent)), missing)
        return self._in_context(self._unshared(out))

    def _unshared(self, resolved: list[ResolvedLabel]) -> list[ResolvedLabel]:
        """The labels with each sense for the image to pick kept by one label only, so that two labels never
        split one class's score: a sense another label resolved to is that label's; a sense two labels may
        pick is kept by the label it is named after ("castle" and "palace" may both pick ``palace.n.01``:
        "palace" keeps it), else by the first."""
        primary = {r.index for r in resolved}
        pickers: dict[int, list[int]] = {}
        for n, r in enumerate(resolved):
            for i in r.senses:
                pickers.setdefault(i, []).append(n)
        keeper = {}
        for i, labels in pickers.items():
            named = [n for n in labels if label_key(self.names[i].rsplit(".", 2)[0]) == label_key(resolved[n].label)]
            keeper[i] = (named or labels)[0]
        out = []
        for n, r in enumerate(resolved):
            kept = tuple(i for i in r.senses if i not in primary and keeper[i] == n)
            out.append(r if kept == r.senses else replace(r, senses=kept))
        return out

    def _in_context(self, resolved: list[ResolvedLabel]) -> list[ResolvedLabel]:
        """Each ambiguous word read as the kind of thing the list's other labels are.

        A word with several senses in the graph, of which the image does not pick (no ``senses``),
        is read in the kind (WordNet's lexicographer file: animal, artifact, food ...) that more of
        the list's other labels are than are of its chosen sense's kind; the first such sense in the
        usual order, of the most frequent kind: "bass" beside "trout" is the fish, not the
        instrument; "bat" beside "ball" the club; "alpaca" beside animals the animal, not the wool.
        Only labels of one kind count: "crane" (the machine or the bird, for the image to pick)
        says nothing about "cat" beside it; such a label is itself scored only as its senses of the
        kind the others are, where one kind leads (:meth:`_narrowed`). A word's usual sense by the
        tagged corpus (``usual``) stays, with an INFO line naming the sense of the others' kind to
        pass instead: "cat" beside "car" and "chair" is the feline, not the whip or the Caterpillar
        tractor, and "dog" the dog, not the andiron (a firedog); "sole" beside "trout" is a shoe's
        sole (its 3 tagged uses), and the line names ``sole.n.04``, the flatfish. A sense another
        label already names is not taken. Labels given as synset names or wnids have no
        alternatives, so they stay as given.
        """
        if len(resolved) < 2 or not any(r.alternatives for r in resolved):
            return resolved
        wn = self._wn()
        if wn is None:
            return resolved

        def kind(index: int) -> str | None:
            try:
                return wn.synset(self.names[index]).lexname()
            except Exception:  # a class of your own, a ConceptNet node: no WordNet sense
                return None

        # each label's kind, once; None where it has none or the image picks among senses of several kinds
        listed = [kinds.pop() if len(kinds) == 1 else None
                  for r in resolved for kinds in [{kind(i) for i in (r.index, *r.senses)}]]
        every = Counter(k for k in listed if k is not None)
        taken = {i for r in resolved for i in (r.index, *r.senses)}
        out = list(resolved)
        for n, res in enumerate(resolved):
            own = listed[n]
            if res.senses and own is None:  # senses of several kinds for the image: keep those of the others' kind
                out[n] = self._narrowed(res, every, kind)
                continue
            if not res.alternatives or res.senses or own is None:
                continue
            kinds = every.copy()
            kinds[own] -= 1  # the other labels' kinds
            options = [(kinds[k], -rank, i) for rank, name in enumerate(res.alternatives)
                       for i in [self.by_name.get(name)] if i is not None and i not in taken
                       for k in [kind(i)] if kinds[k] > kinds[own]]
            if not options:
                continue
            index = max(options)[2]
            sense = f"{self.names[index]} ({wn.synset(self.names[index]).definition()})"
            if res.usual:  # the corpus settles the word: "cat" beside "car" and "chair" is no whip
                told = f"{res.label}|{self.names[index]}"
                if told not in self._told:  # once per label and sense: a server resolves lists often
                    self._told.add(told)
                    logger.info("label %r read as %s, its usual sense, though more of the list's other labels are "
                                "%s; for %s, pass that synset name", res.label, res.synset, kind(index), sense)
                continue
            taken.add(index)
            logger.info("label %r read as %s, of the kind the list's other labels are (%s), rather than %s; pass a "
                        "synset name to choose a sense", res.label, sense, kind(index), res.synset)
            taken.discard(res.index)
            rest = (res.synset,) + tuple(a for a in res.alternatives if a != self.names[index])
            out[n] = ResolvedLabel(res.label, index, self.wnids[index], self.names[index], rest)
        return out

    def _narrowed(self, res: ResolvedLabel, others: Counter, kind: Callable[[int], str | None]) -> ResolvedLabel:
        """``res`` scored only as its senses of the kind more of the list's other labels are than of each
        other kind among its senses ("mouse" beside "keyboard" and "monitor" is the device, not also the
        rodent; "crane" beside "heron" the bird); ``res`` itself where no kind leads."""
        senses = (res.index, *res.senses)
        kinds = Counter(kind(i) for i in senses)
        best = max(kinds, key=lambda k: others[k] if k is not None else -1)
        if best is None or any(others[k] >= others[best] for k in kinds if k != best):
            return res
        kept = [i for i in senses if kind(i) == best]
        logger.info("label %r scored as %s, of the kind the list's other labels are (%s), not also as %s", res.label,
                    ", ".join(self.names[i] for i in kept), best,
                    ", ".join(self.names[i] for i in senses if i not in kept))
        rest = res.alternatives if kept[0] == res.index else \
            tuple(a for a in dict.fromkeys([res.synset, *res.alternatives]) if a != self.names[kept[0]])
        return ResolvedLabel(res.label, kept[0], self.wnids[kept[0]], self.names[kept[0]], rest, tuple(kept[1:]),
                             res.usual and kept[0] == res.index)

    def _wn(self) -> Any:
        """The WordNet reader, or None when it is unavailable (then lemma names are matched only)."""
        if self._wordnet is None:
            return None
        try:
            return self._wordnet()
        except Exception as exc:  # WordNet missing: fall back to the graph's own lemma names
            logger.warning("WordNet unavailable (%s); matching labels to lemma names only", exc)
            self._wordnet, self._wordnet_failed = None, str(exc)
            return None

    def _grounded_nodes(self) -> frozenset[int]:
        """Backbone classes and their ancestors (computed once)."""
        if self._grounded is None:
            self._grounded = frozenset(self._grounded_of()) if self._grounded_of is not None else self.seen
        return self._grounded

    def _missing_wnid(self, wnid: str) -> str:
        """Why a well-formed wnid that is not a node fails: not a WordNet noun, or not in this graph."""
        wn = self._wn()
        if wn is not None:
            from kgzsl.graph.wordnet import synset_from_wnid

            try:
                synset = synset_from_wnid(wn, wnid)
            except ValueError:
                return (f"wnid {wnid} is not a WordNet 3.0 noun synset; check the id (ImageNet wnids are "
                        "WordNet 3.0 noun offsets, e.g. n02084071 for dog.n.01)")
            return (f"wnid {wnid} ({synset.name()}) is not a node of this graph; rebuild the graph with it "
                    "(kgzsl build-graph --wnids ...)")
        return f"wnid {wnid} is not a node of this graph; rebuild the graph with it (kgzsl build-graph --wnids ...)"

    def _synset_node(self, name: str) -> int | None:
        """Node of a noun synset name spelled otherwise than in the graph (``Dog.n.01``).

        Returns None without WordNet (the name is then matched as a word).

        Raises:
            LabelError: If WordNet has no such synset, or it is not a node of this graph.
        """
        wn = self._wn()
        if wn is None:
            return None
        try:
            synset = wn.synset(name)
        except Exception:  # nltk raises WordNetError / ValueError for unknown names
            raise LabelError(f"{name!r} is not a WordNet 3.0 noun synset; check the sense number "
                             f"(e.g. {name.rsplit('.', 2)[0]}.n.01) or give the word alone") from None
        wnid = f"n{synset.offset():08d}"
        if wnid in self.index:
            return self.index[wnid]
        raise NotInGraphError(f"synset {synset.name()} ({wnid}) is not a node of this graph; add it with "
                              f"`kgzsl add-concept RUN {wnid}`, or rebuild the graph with its wnid "
                              "(kgzsl build-graph --wnids ...)", [name])

    def _add_instead(self, text: str, senses: WordSenses) -> None:
        """Raise :class:`NotInGraphError` naming a sense to add instead of the best one present
        (:meth:`~kgzsl.inference.senses.WordSenses.missing`), when the graph can grow (``can_add``)."""
        if self._can_add is None or not self._can_add():
            return
        found = senses.missing()
        if found is None:
            return
        missing, why = found
        best = senses.best
        logger.info("label %r means %s (%s), not a node of the graph, rather than %s (%s)", text,
                    missing.name(), missing.definition(), best.name(), best.definition())
        sense = f"{missing.name()} ({missing.definition()})"
        said = f"{text!r} usually means {sense}" if why == "usual" else \
            f"{text!r}, written with a capital, names {sense}" if why == "proper" else \
            f"{text!r} names a physical thing as {sense}, where the graph has only {best.name()} ({best.definition()})"
        raise NotInGraphError(f"{said}; {missing.name()} is not a node of this graph: add it with "
                              f"`kgzsl add-concept RUN {missing.name()}`", [missing.name()])

    def _result(self, label: str, index: int, alternatives: tuple[str, ...] = ()) -> ResolvedLabel:
        return ResolvedLabel(label=label, index=index, wnid=self.wnids[index], synset=self.names[index],
                             alternatives=alternatives)

    def _resolve_word(self, text: str) -> ResolvedLabel:
        key = label_key(text)
        wn = self._wn()
        if wn is not None:
            key, synsets = _wordnet_form(wn, key)
            senses = WordSenses(key, label_key(wn.morphy(key, "n") or key), synsets, self.index, self.seen,
                                self.requested, self._grounded_nodes, written=text)
            best = senses.best
            if best is not None:
                self._add_instead(text, senses)
                others = tuple(s.name() for s in senses.present[1:])
                if others and text not in self._told:
                    # once per label; DEBUG where the word's usual sense won (every prediction names its synset)
                    self._told.add(text)
                    also = [s.name() for s in senses.also]
                    rest = [name for name in others if name not in also]
                    logger.log(logging.DEBUG if senses.usual(best) else logging.INFO,
                               "label %r is ambiguous: scored as %s (%s)%s%s; pass a synset name such as %r "
                               "to choose one sense", text, best.name(), best.definition(),
                               f", or as {', '.join(also)} where the image fits that better" if also else "",
                               f"; not as {', '.join(rest)}" if rest else "", others[0])
                res = self._result(text, self.index[wnid_of(best)], others)
                return ResolvedLabel(res.label, res.index, res.wnid, res.synset, res.alternatives,
                                     tuple(self.index[wnid_of(s)] for s in senses.also), senses.usual(best))
            if synsets:
                listed = "; ".join(f"{s.name()} ({s.definition()})" for s in synsets[:5])
                word = text if key == label_key(text) else key  # the form WordNet knows: closed, no article
                # an ambiguous word is added as the sense a photo label most likely means (WordSenses.to_add)
                chosen = senses.to_add()
                add = word if len(synsets) == 1 else chosen.name()
                raise NotInGraphError(f"{text!r} is a WordNet noun but none of its senses is a node of this graph: "
                                      f"{listed}. Add it with `kgzsl add-concept RUN {add}`, or rebuild the graph "
                                      f"with its wnid, e.g. {wnid_of(chosen)}", [add])
        if key in self.by_lemma:
            nodes = self.by_lemma[key]
            return self._result(text, nodes[0], tuple(self.names[i] for i in nodes[1:]))
        close = close_words(key, list(self.by_lemma))
        hint = f"; did you mean {', '.join(c.replace('_', ' ') for c in close)}?" if close else \
            "; check the spelling, or give a synset name ('dog.n.01') or a wnid ('n02084071') of a graph node"
        if not re.search("[a-z]", key):  # no Latin letter: another script, an emoji, a number
            hint = "; labels are English words (WordNet nouns), synset names ('dog.n.01') or wnids ('n02084071')"
        prompt = _PROMPT.match(key)
        if prompt:
            hint = f"; a label names the class alone, not a prompt: try {prompt.group(1).replace('_', ' ')!r}"
        if "," in text:  # "windmill,fish" as one label: a search query, or a list passed as one string
            raise LabelError(f"unknown label {text!r}: a label holds no comma; give one label here (commas "
                             "separate the labels of a list, as in --labels)")
        told = f"unknown label {text!r}: not a WordNet noun nor a lemma of this graph's nodes{hint}"
        if self._wordnet_failed:  # "cats", "TV": WordNet would have known them
            told = (f"unknown label {text!r}: not a lemma of this graph's nodes, and WordNet, which knows plurals "
                    f"and other words for them, could not be loaded here ({self._wordnet_failed}){hint}")
        if prompt or not re.search("[a-z]", key):
            raise LabelError(told)
        own = (" Or" if told.endswith("?") else "; or") + " make it a class of your own, under parents the graph has: "
        raise LabelError(f"{told}{own}clf.add_concept({text!r}, parents=[...])",  # a shop's "standing desk"
                         cli_message=f"{told}{own}`kgzsl add-concept RUN {shlex.quote(text)} --parents ...`")


def close_words(word: str, words: list[str], limit: int = 5) -> list[str]:
    """The ``words`` a misspelt ``word`` most likely meant, closest first (at most ``limit``).

    A typo is a few edits: a letter left out, added, changed, or two neighbours swapped ("cta" →
    "cat", "elephnat" → "elephant"). So the words within 1 such edit (words up to 4 letters), 2 (up
    to 8) or 3 come first: fewest edits first, then the closest in length (a letter changed or
    swapped before one left out: "dgo" → "dog" before "do"), then the most alike in letters kept in
    order (``fuzz.ratio``); where none is that close, ``difflib``'s similar-looking words. A word
    that keeps under half of ``word``'s letters is never suggested (``"x"`` is one edit from ``"a"``).
    """
    from rapidfuzz import fuzz, process
    from rapidfuzz.distance import OSA  # optimal string alignment: edits, and a swap counts as one

    allowed = 1 if len(word) <= 4 else 2 if len(word) <= 8 else 3
    found = process.extract(word, words, scorer=OSA.distance, score_cutoff=allowed, limit=None)
    found = [m for m in found if fuzz.ratio(word, m[0]) >= 50]  # at least half the letters kept ("x" is no "a")
    found.sort(key=lambda m: (m[1], abs(len(m[0]) - len(word)), -fuzz.ratio(word, m[0]), m[0]))
    typos = [m[0] for m in found] or difflib.get_close_matches(word, words, n=limit, cutoff=0.75)
    return list(dict.fromkeys(_open_compounds(word, words) + typos))[:limit]


def _open_compounds(word: str, words: list[str], limit: int = 3) -> list[str]:
    """Open compounds that a closed one written as one word most likely names: "clownfish" →
    ``clown_anemone_fish`` (the ``words`` of several parts that start with one end of ``word`` and end
    with the other, each end at least 3 letters), shortest first."""
    if "_" in word or len(word) < 6:
        return []
    found = set()
    for cut in range(3, len(word) - 2):
        head, tail = word[:cut] + "_", "_" + word[cut:]
        found.update(w for w in words if w.startswith(head) and w.endswith(tail))
    return sorted(found, key=lambda w: (len(w), w))[:limit]


def _wordnet_form(wn: Any, key: str) -> tuple[str, list[Any]]:
    """The spelling of a label key that WordNet knows as a noun, with its noun synsets: as given, as a
    closed compound (``"wine glass"`` → ``wineglass``), with spaces for hyphens (``"light-bulb"`` →
    ``light_bulb``; WordNet's own hyphenated nouns, ``t-shirt``, match as given), or without a leading
    article (``"a cat"``); ``(key, [])`` when none is a noun."""
    bare = _ARTICLE.sub("", key)
    forms = (key, key.replace("_", ""), key.replace("-", "_"), bare, bare.replace("_", ""), bare.replace("-", "_"))
    for form in dict.fromkeys(forms):
        synsets = list(dict.fromkeys(wn.synsets(form, pos="n"))) if form else []  # nltk can list one twice
        if synsets:
            return form, synsets
    return key, []
