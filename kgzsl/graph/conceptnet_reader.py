"""Streaming reader of ConceptNet's assertions dump, and the mapping of concept URIs to graph nodes.

The official dump (``conceptnet-assertions-5.7.0.csv.gz``, ~34 M lines) has one assertion per line,
five tab-separated fields::

    /a/[/r/IsA/,/c/en/okapi/n/wn/animal/,/c/en/giraffid/n/wn/animal/]  /r/IsA  /c/en/okapi/n/wn/animal
    /c/en/giraffid/n/wn/animal  {"dataset": "/d/wordnet/3.1", ..., "weight": 2.0}

Concept URIs are ``/c/<language>/<term>[/<pos>[/<source>/<sense>]]``: the term is lowercased text
with ``_`` for spaces, the optional tail a part of speech and a sense label, e.g. the WordNet
lexicographer file (``/n/wn/animal``) or a Wiktionary sense (``/n/wikt/en_1``).
:func:`iter_assertions` reads the file once, line by line, and yields only English-to-English
assertions; :class:`ConceptMapper` turns a concept URI into a node id.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import os
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, NamedTuple

from kgzsl.errors import NotFoundError

__all__ = ["Assertion", "ReadStats", "ConceptClass", "ConceptMapper", "iter_assertions", "concept_terms",
           "classes_from_wordnet"]

logger = logging.getLogger(__name__)

_EN = b"/c/en/"
_TOKEN = re.compile(r"[\w']+")
_PROGRESS_EVERY = 1 << 16  # lines between progress-bar updates


class Assertion(NamedTuple):
    """One English assertion: relation name without ``/r/`` (``IsA``), start and end URIs, weight."""

    relation: str
    start: str
    end: str
    weight: float


@dataclass
class ReadStats:
    """What :func:`iter_assertions` saw; filled in while the generator runs.

    Attributes:
        lines: Lines read.
        kept: English-to-English assertions yielded.
        non_english: Well-formed lines with a non-English (or non-concept) start or end.
        malformed: Skipped lines by reason: ``fields`` (not 5 tab-separated fields), ``encoding``,
            ``uri`` (bad assertion/relation/concept URI), ``json``, ``weight_missing``,
            ``weight_invalid`` (not a finite number > 0). JSON and URIs are checked only on
            English-to-English lines, the only ones parsed.
        bytes_read: Bytes of the (compressed) file consumed.
        seconds: Time spent reading.
    """

    lines: int = 0
    kept: int = 0
    non_english: int = 0
    malformed: Counter = field(default_factory=Counter)
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def skipped_malformed(self) -> int:
        """Total malformed lines."""
        return sum(self.malformed.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for the manifest)."""
        rate = self.lines / self.seconds if self.seconds else 0.0
        return {"lines": self.lines, "kept": self.kept, "non_english": self.non_english,
                "malformed": self.skipped_malformed, "malformed_by_reason": dict(sorted(self.malformed.items())),
                "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3), "lines_per_second": round(rate)}


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    raw = open(path, "rb")
    gz = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    text = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
    return raw, io.BufferedReader(text, buffer_size=1 << 20) if gz else text  # type: ignore[arg-type]


def _parse(line: bytes, stats: ReadStats) -> Assertion | None:
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) != 5:
        stats.malformed["fields"] += 1
        return None
    uri, rel, start, end, info = fields
    if not (start.startswith(_EN) and end.startswith(_EN)):
        stats.non_english += 1
        return None
    try:
        rel_s, start_s, end_s = rel.decode("utf-8"), start.decode("utf-8"), end.decode("utf-8")
        info_s = info.decode("utf-8")
    except UnicodeDecodeError:
        stats.malformed["encoding"] += 1
        return None
    if not (uri.startswith(b"/a/[") and rel_s.startswith("/r/") and len(rel_s) > 3
            and _term(start_s) and _term(end_s)):
        stats.malformed["uri"] += 1
        return None
    try:
        meta = json.loads(info_s)
    except ValueError:
        stats.malformed["json"] += 1
        return None
    if not isinstance(meta, dict) or "weight" not in meta:
        stats.malformed["weight_missing"] += 1
        return None
    weight = meta["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        stats.malformed["weight_invalid"] += 1
        return None
    return Assertion(rel_s[3:], start_s, end_s, float(weight))


def _term(uri: str) -> str:
    """The term of an English concept URI (``/c/en/ice_cream/n`` → ``ice_cream``); '' if malformed."""
    return uri[6:].split("/", 1)[0]


def iter_assertions(path: str | os.PathLike, stats: ReadStats | None = None,
                    progress: bool = True) -> Iterator[Assertion]:
    """Stream the English-to-English assertions of a ConceptNet assertions file.

    Reads the file (gzip or plain) once, line by line, holding one line at a time; malformed
    lines are skipped and counted in ``stats`` (see :class:`ReadStats`), never raised.

    Args:
        path: ``conceptnet-assertions-5.7.0.csv.gz`` or a file in the same format.
        stats: Counters to fill (a fresh one if None); final once the generator is exhausted.
        progress: Show a tqdm bar over the file's bytes.

    Yields:
        :class:`Assertion` tuples in file order.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"ConceptNet assertions file not found: {path} (download "
                            "conceptnet-assertions-5.7.0.csv.gz from the ConceptNet releases)")
    stats = stats if stats is not None else ReadStats()
    start = time.perf_counter()
    raw, fh = _open_binary(path)
    bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"read {path.name}",
               disable=None if progress else True, leave=False)  # None: no bar off a terminal
    try:
        for line in fh:
            stats.lines += 1
            if stats.lines % _PROGRESS_EVERY == 0:
                bar.update(raw.tell() - bar.n)
            item = _parse(line, stats)
            if item is not None:
                stats.kept += 1
                yield item
    finally:
        stats.bytes_read = raw.tell()
        bar.update(stats.bytes_read - bar.n)
        bar.close()
        fh.close()
        raw.close()
        stats.seconds = time.perf_counter() - start
    logger.info("read %s: %d lines, %d English assertions, %d non-English, %d malformed %s in %.1fs",
                path.name, stats.lines, stats.kept, stats.non_english, stats.skipped_malformed,
                dict(stats.malformed) or "", stats.seconds)


def concept_terms(lemma: str) -> list[str]:
    """ConceptNet terms a WordNet lemma name may appear as (``Canis_familiaris`` → ``canis_familiaris``).

    ConceptNet joins word tokens with ``_`` after case-folding (hyphens and most punctuation split
    tokens); the plain lowercase form is added for spellings that differ from that tokenisation.
    """
    text = unicodedata.normalize("NFC", lemma).replace("_", " ")
    tokens = [t.strip("'").casefold() for t in _TOKEN.findall(text)]
    terms = ["_".join(t for t in tokens if t), "_".join(text.casefold().split())]
    return [t for t in dict.fromkeys(terms) if t and "/" not in t]


@dataclass(frozen=True)
class ConceptClass:
    """A graph node that ConceptNet concepts may be identified with (a class synset).

    Args:
        id: Node id (the wnid).
        name: Synset name (``okapi.n.01``).
        lemmas: Lemma names (``("okapi", "Okapia_johnstoni")``).
        gloss: Definition.
        domains: WordNet sense labels ConceptNet gives this synset in ``/n/wn/<label>``: its
            lexicographer file without ``noun.`` (``animal``) and its topic domain, if any.
        usual: The lemmas of which this synset is WordNet's first noun sense (the most used one):
            only those map an untagged ``/c/en/<term>`` to the class (``wind`` is the air, not the
            wind instrument that is a class); None: every lemma (classes described by hand).
    """

    id: str
    name: str
    lemmas: tuple[str, ...]
    gloss: str = ""
    domains: tuple[str, ...] = ()
    usual: tuple[str, ...] | None = None


def classes_from_wordnet(wnids: Iterable[str], wordnet_dir: str | None = None) -> list[ConceptClass]:
    """Describe WordNet 3.0 noun synsets for :class:`ConceptMapper` (lemmas, gloss, sense labels).

    Raises:
        ValueError: If a wnid is not a WordNet 3.0 noun synset.
        kgzsl.graph.WordNetNotFoundError: If WordNet is not installed.
    """
    from kgzsl.graph.wordnet import load_wordnet, synset_from_wnid

    wn = load_wordnet(wordnet_dir)
    out = []
    for wnid in dict.fromkeys(wnids):
        syn = synset_from_wnid(wn, wnid)
        domains = [syn.lexname().split(".", 1)[-1]]
        domains += [concept_terms(d.lemma_names()[0])[0] for d in syn.topic_domains()]
        usual = tuple(lemma for lemma in syn.lemma_names() if wn.synsets(lemma, "n")[:1] == [syn])
        out.append(ConceptClass(wnid, syn.name(), tuple(syn.lemma_names()), syn.definition(),
                                tuple(dict.fromkeys(domains)), usual))
    return out


class ConceptMapper:
    """Maps English concept URIs to node ids.

    Rules, in order, for ``/c/en/<term>[/<pos>[/<source>/<label>]]``:

    1. ``term`` is no lemma of a class: the node is the root ``/c/en/<term>`` (all senses merged).
    2. A WordNet sense tag ``/n/wn/<label>`` naming exactly one class with that lemma and label: that
       class's id. Any other ``/wn/`` sense of a class lemma (another synset, e.g. ``dog/n/wn/person``)
       is its own node, ``/c/en/<term>/n/wn/<label>``, never merged into a class.
    3. A non-noun sense of a class lemma (``/c/en/dog/v``) is its own node ``/c/en/<term>/<pos>``.
    4. Otherwise (root, ``/n``, ``/n/wikt/...``): the class, if exactly one class has the lemma and
       it is the lemma's usual sense (:attr:`ConceptClass.usual`); for lemmas shared by several classes
       (``crane``), or whose usual sense is no class (``wind``), the root, a node of its own.

    Args:
        classes: The classes, whose ids become the node ids of their concepts.

    Attributes:
        matched: Per class id, the distinct concept URIs mapped to it (filled by :meth:`node`).
        ambiguous: Terms shared by several classes.
    """

    def __init__(self, classes: Iterable[ConceptClass]) -> None:
        self.by_term: dict[str, set[str]] = {}
        self.by_sense: dict[tuple[str, str], set[str]] = {}
        self.unusual: set[tuple[str, str]] = set()  # (term, class id): the term's usual sense is another synset
        for c in classes:
            for lemma in c.lemmas:
                for term in concept_terms(lemma):
                    self.by_term.setdefault(term, set()).add(c.id)
                    if c.usual is not None and lemma not in c.usual:
                        self.unusual.add((term, c.id))
                    for label in c.domains:
                        self.by_sense.setdefault((term, label), set()).add(c.id)
        self.ambiguous = {t for t, ids in self.by_term.items() if len(ids) > 1}
        self.matched: dict[str, set[str]] = {}

    def node(self, uri: str) -> str:
        """The node id of an English concept URI (see the class docstring)."""
        parts = uri.split("/", 6)  # '', 'c', 'en', term, pos, source, label...
        term = parts[3]
        ids = self.by_term.get(term)
        if not ids:
            return "/c/en/" + term
        pos = parts[4] if len(parts) > 4 else ""
        if len(parts) > 6 and parts[5] == "wn":
            label = parts[6].split("/", 1)[0]
            hits = self.by_sense.get((term, label), ())
            if len(hits) != 1:
                return f"/c/en/{term}/{pos}/wn/{label}"
            node = next(iter(hits))
        elif pos and pos != "n":
            return f"/c/en/{term}/{pos}"
        elif len(ids) == 1 and (term, next(iter(ids))) not in self.unusual:
            node = next(iter(ids))
        else:
            return "/c/en/" + term
        self.matched.setdefault(node, set()).add(uri)
        return node
