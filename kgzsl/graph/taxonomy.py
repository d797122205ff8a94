"""Taxonomy files: your own classes, each placed under WordNet nouns or under one another.

One format, two spellings. YAML, a list of mappings::

    - name: e-scooter
      parents: [scooter.n.02]              # a list, or one string
      description: a standing scooter with an electric motor
      aliases: [electric scooter]
    - name: folding e-scooter
      parents: e-scooter                   # another entry's name
    - okapi                                # a WordNet noun alone: its synset is used

CSV, with a header line naming the same columns (``name`` required; ``parents`` and ``aliases``
separated by ``;``)::

    name,parents,description,aliases
    e-scooter,scooter.n.02,a standing scooter with an electric motor,electric scooter

A parent is a WordNet word, a synset name (``scooter.n.02``), a wnid, or another entry's name or
alias. An entry with parents is *your* node (id ``x:<name>``), even when WordNet knows the word: its
name and aliases then mean your node as labels (a warning says so when the file is checked). An
entry without parents must be a WordNet noun (``sense`` picks one of an ambiguous word's senses).

:func:`~kgzsl.graph.taxonomy_files.read_taxonomy` reads a file and :func:`parse_taxonomy` checks it
completely before anything is built: bad fields, duplicate
names or aliases and cycles among the entries are reported together, one line per problem, each
naming the entry and its line. Parents are checked by the callers, which know what a parent may be
(:func:`kgzsl.graph.build.build_taxonomy_graph`; :func:`kgzsl.inference.concepts.add_concepts` for a
trained run).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

from kgzsl.errors import InputError
from kgzsl.graph.wordnet import SYNSET_RE, WNID_RE, synset_from_wnid

__all__ = ["TaxonomyEntry", "TaxonomyError", "parse_taxonomy", "parse_concept", "topological_order",
           "check_parents", "by_label", "noun_senses", "custom_id", "label_key", "wordnet_collisions", "FIELDS"]

logger = logging.getLogger(__name__)

#: the fields an entry may have (``name`` is required)
FIELDS = ("name", "parents", "description", "aliases", "sense")


class TaxonomyError(InputError):
    """A taxonomy file or entry list is wrong; the message has one line per problem, naming entry and line."""


@dataclass(frozen=True)
class TaxonomyEntry:
    """One class of a taxonomy.

    Attributes:
        name: The class name, also a label (``"solar-powered backpack"``).
        parents: Where it hangs: WordNet words, synset names, wnids or other entries' names; empty
            for a WordNet noun added as itself.
        description: Text its feature is computed from (with the name); None: the name alone.
        aliases: Other labels that mean this node.
        sense: For a WordNet noun without parents: the synset name or wnid meant.
        where: ``file:line`` (``item N`` for entries given in Python), for messages.
    """

    name: str
    parents: tuple[str, ...] = ()
    description: str | None = None
    aliases: tuple[str, ...] = ()
    sense: str | None = None
    where: str = ""

    def spec(self) -> dict[str, Any]:
        """The entry as a concept-file mapping (empty fields left out)."""
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "where"}
        return {k: v for k, v in out.items() if v not in (None, [], "")}


def label_key(text: str) -> str:
    """How names are compared: case, spaces, underscores and hyphen spacing do not matter."""
    return "_".join(str(text).strip().lower().replace("-", " - ").split()).replace("_-_", "-")


def custom_id(name: str) -> str:
    """The node id ``x:<slug>`` of one of your classes.

    Raises:
        InputError: If the name has no letters or digits.
    """
    slug = "-".join(re.sub(r"[^\w\- ]+", " ", name.lower()).replace("_", " ").split())
    if not slug:
        raise InputError(f"cannot make a node id from {name!r}; give a name with letters or digits")
    return f"x:{slug}"


def _text(value: Any) -> bool:
    """Whether a YAML value stands for text: a string, or a number written unquoted (``- 2024``); not a
    boolean, which YAML makes of an unquoted yes / no / on / off / true / false."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and bool(str(value).strip())


_QUOTE = "YAML reads an unquoted yes, no, on, off, true or false as a boolean: put it in quotes ('yes')"


def _strings(value: Any, field: str, problems: list[str], where: str) -> tuple[str, ...]:
    """A field that takes a list of strings or one string (CSV: ``;``-separated); ``field`` as messages spell it."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(_text(v) for v in items):
        odd = isinstance(value, bool) or isinstance(items, list) and any(isinstance(v, bool) for v in items)
        problems.append(f"{where}: {field} must be a list of non-empty strings or one string, got {value!r}"
                        f"{'; ' + _QUOTE if odd else ''}")
        return ()
    return tuple(dict.fromkeys(" ".join(str(v).split()) for v in items))


@dataclass(frozen=True)
class _Spelling:
    """How problem messages name an entry and its fields.

    Attributes:
        fields: Each field as the reader wrote it: ``'parents'`` in a file, ``parents=`` in Python,
            ``--parents`` on the command line.
        entry: The entry, from its place (``file:line``) and name (None when it has none).
    """

    fields: dict[str, str]
    entry: Callable[[str, str | None], str]

    def field(self, name: str) -> str:
        """``name`` as the reader wrote it."""
        return self.fields.get(name, f"'{name}'")


#: entries of a file (or a list given in Python): ``t.yaml:3: entry 'a': 'parents' ...``
_FILE = _Spelling({}, lambda where, name: f"{where}: entry {name!r}" if name is not None else where)
#: one concept given to ``add_concept``: ``add_concept('a'): parents= ...``
_PYTHON = _Spelling({"name": "the word", **{f: f"{f}=" for f in FIELDS if f != "name"}},
                    lambda where, name: f"add_concept({name!r})" if name is not None else "add_concept")
#: one concept given to ``kgzsl add-concept RUN WORD``: ``add-concept 'a': --parents ...``
_CLI = _Spelling({"name": "WORD", **{f: f"--{f}" for f in FIELDS if f != "name"}},
                 lambda where, name: f"add-concept {name!r}" if name is not None else "add-concept")


def parse_taxonomy(items: Sequence[Any], source: str = "", lines: Sequence[int] | None = None,
                   ) -> list[TaxonomyEntry]:
    """Check a list of entries (mappings or bare names) and return them as :class:`TaxonomyEntry`.

    Args:
        items: Mappings with the :data:`FIELDS`, or strings (a WordNet noun alone).
        source: The file they come from, for messages ("" for entries given in Python).
        lines: Line number of each item in ``source``.

    Raises:
        TaxonomyError: Listing every bad field, duplicate name or alias, and cycle.
    """
    entries, problems = _check(items, source, lines, _FILE)
    if problems:
        raise TaxonomyError("\n".join(["the taxonomy has problems; nothing was added or built:"] + problems))
    return entries


def parse_concept(item: Any) -> TaxonomyEntry:
    """Check one concept given by itself (``clf.add_concept(...)``, ``kgzsl add-concept RUN WORD``).

    The same checks as :func:`parse_taxonomy`, with the problems said of the concept given rather
    than of a taxonomy's entry: ``add_concept('teapot'): aliases= are for your own classes ...``,
    and on the command line ``add-concept 'teapot': --aliases are for your own classes ...``.

    Args:
        item: A mapping with the :data:`FIELDS`, or a name.

    Raises:
        TaxonomyError: Its problems on one line (the command-line wording in ``cli_message``).
    """
    entries, problems = _check([item], "", None, _PYTHON)
    if problems:
        raise TaxonomyError("; ".join(problems), cli_message="; ".join(_check([item], "", None, _CLI)[1]))
    return entries[0]


def _check(items: Sequence[Any], source: str, lines: Sequence[int] | None, spell: _Spelling,
           ) -> tuple[list[TaxonomyEntry], list[str]]:
    """:func:`parse_taxonomy`'s work: the entries, and one line per problem in the words of ``spell``."""
    problems: list[str] = []
    entries: list[TaxonomyEntry] = []
    for i, item in enumerate(items):
        where = f"{source}:{lines[i]}" if source and lines else (f"{source}: item {i + 1}" if source else
                                                                f"item {i + 1}")
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            problems.append(f"{spell.entry(where, None)}: an entry must be a mapping ({', '.join(FIELDS)}) or a "
                            f"name, got {item!r}")
            continue
        unknown = sorted(set(map(str, item)) - set(FIELDS))
        name = item.get("name")
        named = " ".join(str(name).split()) if _text(name) else None
        label = spell.entry(where, named)
        if unknown:
            problems.append(f"{label}: unknown field(s) {', '.join(unknown)}; an entry has {', '.join(FIELDS)}")
        if isinstance(name, bool):
            problems.append(f"{label}: {spell.field('name')} is {name!r}, not a name; {_QUOTE}")
            continue
        if named is None:
            problems.append(f"{label}: {spell.field('name')} is missing or empty; every entry needs a name "
                            "(a word, a synset name or a wnid)")
            continue
        name = named
        for field in ("description", "sense"):
            if item.get(field) is not None and not _text(item[field]):
                problems.append(f"{label}: {spell.field(field)} must be a string, got {item[field]!r}"
                                f"{'; ' + _QUOTE if isinstance(item[field], bool) else ''}")
        parents = _strings(item.get("parents"), spell.field("parents"), problems, label)
        aliases = _strings(item.get("aliases"), spell.field("aliases"), problems, label)
        commas = [text for text in (name, *aliases) if "," in text]
        if commas:  # "comma, fish" could never be a label: label lists are comma-separated
            problems.append(f"{label}: a name or alias cannot hold a comma ({', '.join(map(repr, commas))}): labels "
                            "are given as comma-separated lists; write it without one")
        description = str(item["description"]).strip() or None if item.get("description") is not None else None
        sense = str(item["sense"]).strip() or None if item.get("sense") is not None else None
        if aliases and not parents:
            problems.append(f"{label}: {spell.field('aliases')} are for your own classes (with "
                            f"{spell.field('parents')}); a WordNet noun already answers to its lemma names")
        if sense and parents:
            problems.append(f"{label}: give {spell.field('sense')} (a WordNet noun as itself) or "
                            f"{spell.field('parents')} (your own class), not both")
        try:
            if parents:
                custom_id(name)
        except InputError as exc:
            problems.append(f"{label}: {exc}")
        entries.append(TaxonomyEntry(name, parents, description, aliases, sense, where))
    problems += _duplicates(entries, spell) + _cycles(entries, spell)
    return entries, problems


def _duplicates(entries: list[TaxonomyEntry], spell: _Spelling = _FILE) -> list[str]:
    seen: dict[str, TaxonomyEntry] = {}
    problems = []
    for e in entries:
        label = spell.entry(e.where, e.name)
        for text in (e.name, *e.aliases):
            key = label_key(text)
            first = seen.setdefault(key, e)
            if first is not e:
                problems.append(f"{label}: {text!r} is already the name or an alias of entry "
                                f"{first.name!r} ({first.where}); every name and alias must be unique")
            elif text != e.name and key == label_key(e.name):
                problems.append(f"{label}: alias {text!r} is its own name")
    ids: dict[str, TaxonomyEntry] = {}
    for e in entries:
        if e.parents and re.search(r"\w", e.name):
            first = ids.setdefault(custom_id(e.name), e)
            if first is not e and label_key(first.name) != label_key(e.name):
                problems.append(f"{spell.entry(e.where, e.name)} and entry {first.name!r} ({first.where}) both "
                                f"get the node id {custom_id(e.name)}; rename one of them")
    return problems


def by_label(entries: Iterable[TaxonomyEntry]) -> dict[str, TaxonomyEntry]:
    """Each entry under the :func:`label_key` of its name and of each alias."""
    out: dict[str, TaxonomyEntry] = {}
    for e in entries:
        for text in (e.name, *e.aliases):
            out.setdefault(label_key(text), e)
    return out


def _cycles(entries: list[TaxonomyEntry], spell: _Spelling = _FILE) -> list[str]:
    """Every cycle among the entries' parents, once each (depth-first from each entry up to its parents)."""
    by_key = by_label(entries)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    problems: list[str] = []

    def visit(e: TaxonomyEntry, stack: list[TaxonomyEntry]) -> None:
        state[e.name] = 1
        stack = stack + [e]
        for p in e.parents:
            parent = by_key.get(label_key(p))
            if parent is None:
                continue
            if parent is e:  # its own parent (by its name or an alias)
                how = "" if label_key(p) == label_key(e.name) else f", as its alias {p!r}"
                problems.append(f"{spell.entry(e.where, e.name)}: the parents form a cycle ({e.name!r} is its own "
                                f"parent{how}); a class cannot be its own ancestor")
            elif state.get(parent.name) == 1:
                loop = stack[stack.index(parent):] + [parent]
                problems.append(f"{spell.entry(e.where, e.name)}: the parents form a cycle ("
                                + " → ".join(f"{x.name!r}" for x in loop) + ", each a parent of the one before: "
                                + ", ".join(f"{x.name!r} at {x.where}" for x in loop[:-1])
                                + "); a class cannot be its own ancestor")
            elif parent.name not in state:
                visit(parent, stack)
        state[e.name] = 2

    for e in entries:
        if e.name not in state:
            visit(e, [])
    return problems


def topological_order(entries: Sequence[TaxonomyEntry]) -> list[TaxonomyEntry]:
    """The entries with each one after the entries it names as parents (else in the given order).

    The entries must be free of cycles (:func:`parse_taxonomy` checks).
    """
    by_key = by_label(entries)
    done: dict[str, TaxonomyEntry] = {}

    def place(e: TaxonomyEntry) -> None:
        for p in e.parents:
            parent = by_key.get(label_key(p))
            if parent is not None and parent.name not in done:
                place(parent)
        done.setdefault(e.name, e)

    for e in entries:
        if e.name not in done:
            place(e)
    return list(done.values())


def noun_senses(wn: Any, text: str) -> list[Any]:
    """The WordNet noun synsets ``text`` can mean: one for a wnid or synset name, every sense of a word.

    Raises:
        InputError: If a wnid or synset name names no WordNet 3.0 noun synset.
    """
    text = text.strip()
    if WNID_RE.match(text):
        return [synset_from_wnid(wn, text)]
    if SYNSET_RE.match(text):
        try:
            return [wn.synset(text)]
        except Exception:  # nltk raises WordNetError / ValueError for unknown names
            raise InputError(f"{text!r} is not a WordNet 3.0 noun synset") from None
    return list(wn.synsets("_".join(text.split()), pos="n"))


def wordnet_collisions(wn: Any, entries: Sequence[TaxonomyEntry]) -> list[str]:
    """A warning line for each of your classes' names and aliases that is also a WordNet noun (and log them)."""
    out = []
    for e in entries:
        if not e.parents or wn is None:
            continue
        for text in (e.name, *e.aliases):
            senses = wn.synsets("_".join(text.split()), pos="n")
            if senses:
                out.append(f"{e.where}: {text!r} is also a WordNet noun ({', '.join(s.name() for s in senses[:3])}"
                           f"{', ...' if len(senses) > 3 else ''}); as a label it now means your class "
                           f"{e.name!r}; give a synset name such as {senses[0].name()} for WordNet's")
    for line in out:
        logger.warning("%s", line)
    return out


def check_parents(entries: Sequence[TaxonomyEntry], known: Callable[[str], str | None]) -> None:
    """Check every parent before anything is built: another entry, or what ``known`` accepts.

    Args:
        entries: Checked entries (:func:`parse_taxonomy`).
        known: Returns None for a parent it can place, else why it cannot.

    Raises:
        TaxonomyError: One line per parent that cannot be placed, naming the entry and its line.
    """
    by_key = by_label(entries)
    problems = []
    for e in entries:
        for p in e.parents:
            if label_key(p) in by_key:
                continue
            why = known(p)
            if why is not None:
                problems.append(f"{e.where}: entry {e.name!r}: parent {p!r}: {why}")
    if problems:
        raise TaxonomyError("\n".join(["the taxonomy has problems; nothing was added or built:"] + problems))
