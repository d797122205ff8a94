"""New concepts without retraining: extend the graph, run the trained model inductively.

A concept is either a WordNet noun that is not in the run's graph (its synset is attached with every
missing hypernym on its way up to a node the graph has), or a class of your own: a node ``x:<name>``
under the parents you name (WordNet words, synset names, wnids, graph nodes or other entries of the
same taxonomy), its text feature taken from its name, aliases and description. A whole taxonomy
file (:mod:`kgzsl.graph.taxonomy`) is added in one batch: every entry is checked first, then the
graph is extended once, the new texts are encoded in one call and the model runs once.

The trained propagation model, loaded from ``model.safetensors`` (its name and hyper-parameters are
in the file's header), runs in eval mode over the extended graph. The rows of *every* added concept
are recomputed at each addition, so they always equal a full re-propagation over the run's graph
plus all added concepts, whether the concepts came one by one or in one file; the run's own rows
and every weight stay as trained. :mod:`kgzsl.inference.concept_store` keeps the rows in the run
folder so that loading a run never re-propagates.

Example:
    >>> clf = ZeroShotClassifier.load("runs/dgp")
    >>> clf.add_concept("okapi")
    >>> clf.add_concept("e-scooter", parents=["motor scooter"], description="a standing scooter with an electric motor")
    >>> report = clf.add_concepts("catalogue.yaml")     # a taxonomy file, one propagation
    >>> clf.predict("street.jpg", ["okapi", "e-scooter", "bicycle"])
    >>> clf.save_concepts("concepts.yaml")   # reload with load_concepts(clf, "concepts.yaml")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kgzsl.errors import InputError, SetupError
from kgzsl.graph.taxonomy import (TaxonomyEntry, TaxonomyError, by_label, label_key, noun_senses, parse_concept,
                                  parse_taxonomy, topological_order, wordnet_collisions)
from kgzsl.graph.taxonomy_files import read_taxonomy
from kgzsl.inference.concept_nodes import (SYNSET_RE, WNID_RE, AmbiguousConceptError, ConceptError, NodeExtension,
                                           custom_id, pick_synset, resolve_parent)
from kgzsl.inference.concept_state import ConceptState, concept_graph
from kgzsl.inference.labels import LabelError, ResolvedLabel, close_words
from kgzsl.utils.io import write_text

__all__ = ["ConceptError", "AmbiguousConceptError", "ConceptReport", "add_concept", "add_concepts", "save_concepts",
           "load_concepts"]

logger = logging.getLogger(__name__)


@dataclass
class ConceptReport:
    """What :func:`add_concepts` did.

    Attributes:
        added: Each entry added, resolved to its node (in the given order).
        existing: Each entry that already was a node: nothing changed for it.
        new_nodes: Nodes appended (an entry may bring missing WordNet hypernyms along).
        warnings: Names that are also WordNet nouns (your class now wins as a label), and classes of
            your own given again with other parents than those they have, or with new aliases (the
            class stays as it is).
        other_senses: Names in ``existing`` given as a word that has other WordNet noun senses
            than the node it resolved to (give ``sense`` to add one of them).
    """

    added: list[ResolvedLabel] = field(default_factory=list)
    existing: list[ResolvedLabel] = field(default_factory=list)
    new_nodes: int = 0
    warnings: list[str] = field(default_factory=list)
    other_senses: list[str] = field(default_factory=list)


def _entries(taxonomy: str | Path | Sequence[Any], stored: bool = False) -> list[TaxonomyEntry]:
    """The checked entries of a file or list; a list of one is one concept, its problems said of it.

    Raises:
        kgzsl.graph.taxonomy.TaxonomyError: The problems of a file (one without entries too, unless
            it is the run's own list, ``stored``) or of a list of several entries.
        ConceptError: The problems of a single concept (``add-concept 'teapot': ...``).
    """
    if isinstance(taxonomy, (str, Path)):
        return read_taxonomy(taxonomy, allow_empty=stored)
    items = list(taxonomy)
    if all(isinstance(e, TaxonomyEntry) for e in items):
        return items
    if len(items) == 1:  # one concept (clf.add_concept, kgzsl add-concept RUN WORD): no taxonomy to speak of
        try:
            return [parse_concept(items[0])]
        except TaxonomyError as exc:
            raise ConceptError(str(exc), cli_message=exc.cli_message) from None
    return parse_taxonomy(items)


def _node_text(e: TaxonomyEntry) -> str:
    names = ", ".join(" ".join(t.replace("_", " ").split()) for t in (e.name, *e.aliases))
    return f"{names}: {e.description.strip()}" if e.description and e.description.strip() else names


class _Planner:
    """Places each entry on a :class:`NodeExtension` without changing the classifier (checks first)."""

    def __init__(self, clf: Any, state: ConceptState, wn: Any, entries: list[TaxonomyEntry]) -> None:
        self.clf, self.state, self.wn = clf, state, wn
        self.ext = NodeExtension(state.graph)
        self.batch = by_label(entries)
        self.placed: dict[str, tuple[int, bool]] = {}  # entry name -> (node, already a node)
        self.other_senses: list[str] = []  # entries resolved to a node as words with more noun senses
        self.warnings: list[str] = []  # entries of your own given again with other parents or new aliases
        self.hypernym = state.graph.relations.index("hypernym") if "hypernym" in state.graph.relations else 0

    def place(self, e: TaxonomyEntry) -> None:
        resolver = self.clf.resolver
        if not e.parents:
            node = None if e.sense else self._label_node(e.name)
            if node is not None:
                self.placed[e.name] = (node, True)
                return
            synset = pick_synset(self.wn, e.name, e.sense, set(self.ext.index)) if self.wn is not None else None
            if synset is None:
                if WNID_RE.match(e.name) or SYNSET_RE.match(e.name):
                    raise ConceptError(f"{e.name!r} names no WordNet noun synset")
                close = close_words(label_key(e.name), list(self.wn.all_lemma_names("n"))) if self.wn is not None else []
                meant = (f" (did you mean {', '.join(c.replace('_', ' ') for c in close)}? then fix the name)"
                         if close else "")
                raise ConceptError(
                    f"{e.name!r} is not a WordNet noun{meant}: say where it belongs with parents=[...] (words, "
                    "synset names or wnids of the graph), e.g. parents=['scooter']",
                    cli_message=f"{e.name!r} is not a WordNet noun{meant}: say where it belongs with --parents "
                    "(comma-separated words, synset names or wnids of the graph; in a --file: 'parents:'), "
                    "e.g. --parents scooter")
            wnid = f"n{synset.offset():08d}"
            self.placed[e.name] = (self.ext.add_synset(synset), wnid in self.state.graph.index)
            return
        wnid = custom_id(e.name)
        if wnid in self.ext.index:
            self.placed[e.name] = (self.ext.index[wnid], True)
            self._check_existing(e, self.ext.index[wnid])
            return
        for text in (e.name, *e.aliases):
            if resolver.own.get(label_key(text)):
                other = resolver.own[label_key(text)][0]
                raise ConceptError(f"{text!r} already names the class {self.clf.wnids[other]}; give this entry "
                                   "another name or alias")
        ups = [self._parent(p) for p in e.parents]
        node = self.ext.add(wnid, wnid, ["_".join(t.split()) for t in (e.name, *e.aliases)],
                            e.description or "", text=_node_text(e))
        self.ext.edges += [(node, p, self.hypernym) for p in dict.fromkeys(ups)]
        self.placed[e.name] = (node, False)

    def _label_node(self, name: str) -> int | None:
        """The node ``name`` already resolves to as a label (as ``predict`` resolves it), or None."""
        try:
            node = self.clf.resolver.resolve(name).index
        except LabelError:  # not a node (a WordNet noun to add, or unknown): pick_synset says which
            return None
        if self.wn is not None and not (WNID_RE.match(name) or SYNSET_RE.match(name)):
            if len(noun_senses(self.wn, name)) > 1:
                self.other_senses.append(name)
        return node

    def _check_existing(self, e: TaxonomyEntry, node: int) -> None:
        """Note when a class of your own is given again under other parents than it has, or with new
        aliases: it stays as it is (both are part of what its row is computed from, its aliases of its
        text feature), with a warning that says how to change it."""
        graph = self.state.graph
        have = {p for c, p, _ in graph.edges if c == node}
        given = set()
        for spec in e.parents:
            entry = self.batch.get(label_key(spec))
            try:
                given.add(self.placed[entry.name][0] if entry is not None and entry.name in self.placed
                          else self.clf.resolver.resolve(spec).index)
            except LabelError:  # not a node: surely not one of its parents
                given.add(-1)
        names = {label_key(t) for t in (graph.lemmas[node] if node < graph.num_nodes else ())}
        new = [a for a in e.aliases if label_key(a) not in names]
        if given == have and not new:
            return
        # the stored entry of the same node: "e bike" and a stored "E-Bike" are both x:e-bike
        stored = next((a for a in self.state.added if _node_id(a) == graph.wnids[node]), None)
        if stored is not None:
            kept, aliases = (_listed(stored.get(k)) for k in ("parents", "aliases"))
            how = f"remove its entry from {Path(self.clf.run_dir) / 'concepts.yaml'} and add it again"
        else:  # a class of the graph the run was trained on
            kept = [graph.names[p] for p in sorted(have)]
            aliases = [t.replace("_", " ") for t in graph.lemmas[node][1:]]
            how = None
        where = f"{e.name!r} is already a node of the run ({graph.wnids[node]})"
        if given != have:
            fix = f"to change them, {how}" if how else \
                "they come from the graph the run was trained on: change them there and retrain"
            self.warnings.append(f"{where} under {', '.join(kept)}: the parents given ({', '.join(e.parents)}) "
                                 f"differ and are not used; {fix}")  # logged once the whole batch is known to go in
        if new:
            fix = f"to add them, {how}" if how else \
                "its aliases come from the graph the run was trained on: add them there and retrain"
            self.warnings.append(f"{where} with the aliases {', '.join(aliases) or '(none)'}: the new aliases "
                                 f"given ({', '.join(new)}) are not added, as they are part of the text its row is "
                                 f"computed from; {fix}")

    def _parent(self, spec: str) -> int:
        entry = self.batch.get(label_key(spec))
        if entry is not None:
            if entry.name not in self.placed:
                raise ConceptError(f"parent {spec!r}: its own entry ({entry.where}) could not be added")
            return self.placed[entry.name][0]
        try:
            return resolve_parent(self.clf, self.ext, self.wn, spec, others=self.batch)
        except AmbiguousConceptError as exc:
            listed = "; ".join(f"{name} ({gloss})" for name, _, gloss in exc.senses[:6])
            raise ConceptError(f"parent {spec!r} is ambiguous and none of its senses is a node: {listed}; "
                               "write the synset name you mean") from None
        except LabelError as exc:
            raise ConceptError(f"parent {spec!r}: {exc}") from None


def _listed(value: Any) -> list[str]:
    """A stored entry's ``parents`` or ``aliases`` as a list (one string, a list, or nothing)."""
    return [value] if isinstance(value, str) else list(value or [])


def _node_id(stored: Any) -> str | None:
    """The node id of a stored class of your own (``x:<name>``); None for a stored WordNet noun or a bad entry."""
    if not isinstance(stored, dict) or not stored.get("parents"):
        return None
    try:
        return custom_id(str(stored.get("name", "")))
    except InputError:
        return None


def add_concepts(clf: Any, taxonomy: str | Path | Sequence[Any], stored: bool = False) -> ConceptReport:
    """Add every class of a taxonomy to a loaded classifier in one propagation (no weight changes).

    Every entry is checked before anything changes: fields, duplicates and cycles (see
    :mod:`kgzsl.graph.taxonomy`), then names, senses and parents against the graph and WordNet. Then
    the graph is extended once, the new nodes' texts are encoded in one call, and the model computes
    the rows of all added concepts (earlier ones included) in one run. An entry that already is a
    node changes nothing and is listed in ``existing`` (other parents or new aliases given for it
    are not used: ``warnings`` says so, and how to change it).

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier` loaded from a run folder.
        taxonomy: A taxonomy file (YAML or CSV), or a list of entries (mappings with ``name``,
            ``parents``, ``description``, ``aliases``, ``sense``; bare names; or :class:`TaxonomyEntry`).
            A list of one is one concept: its problems are said of it, as :func:`add_concept` says them.
        stored: The entries are the run's own stored concepts, added again (on load, or because
            another process stored them): the names they share with WordNet nouns were reported
            when they were first added, and are not logged again, and the list may be empty.

    Returns:
        What was added and what already existed.

    Raises:
        kgzsl.errors.NotFoundError: If the file does not exist.
        kgzsl.graph.taxonomy.TaxonomyError: One line per problem, naming each entry (and line); for a
            file without entries, naming it (unless ``stored``).
        ConceptError: For a single entry given in Python, its problem as such (e.g. an
            :class:`AmbiguousConceptError` listing the senses).
    """
    with clf.concept_lock:  # threads adding at once extend one state, one after the other
        return _add_concepts(clf, taxonomy, stored)


def _add_concepts(clf: Any, taxonomy: str | Path | Sequence[Any], stored: bool) -> ConceptReport:
    """:func:`add_concepts`' work, under the classifier's ``concept_lock``."""
    from kgzsl.graph.wordnet import load_wordnet
    from kgzsl.text.features import get_encoder, node_texts

    entries = _entries(taxonomy, stored)
    report = ConceptReport()
    if not entries:
        return report
    state = concept_graph(clf)
    try:
        wn = load_wordnet()
    except SetupError as exc:  # WordNet missing: only custom nodes under known parents can be added
        logger.warning("WordNet unavailable (%s); only classes under nodes of the graph can be added", exc)
        wn = None
    planner = _Planner(clf, state, wn, entries)
    problems: list[tuple[TaxonomyEntry, Exception]] = []
    for e in topological_order(entries):
        try:
            planner.place(e)
        except (ConceptError, LabelError) as exc:
            problems.append((e, exc))
    if problems:
        if len(entries) == 1 and entries[0].where.startswith("item "):
            raise problems[0][1]  # one concept given in Python: its own error, as add_concept raises it
        raise TaxonomyError("\n".join(["the taxonomy has problems; nothing was added:"] + [
            f"{e.where}: entry {e.name!r}: {exc.cli_text() if hasattr(exc, 'cli_text') else exc}"
            for e, exc in problems]))
    for line in planner.warnings:
        logger.warning("%s", line)
    report.warnings = ([] if stored else wordnet_collisions(wn, entries)) + planner.warnings
    report.other_senses = planner.other_senses
    ext = planner.ext
    base = len(clf.wnids) - len(clf.added_wnids)
    n, k = state.graph.num_nodes, len(ext.wnids)
    if k:
        graph = state.graph.extended(ext.wnids, ext.names, ext.lemmas, ext.glosses, ext.edges)
        encoder, use_gloss = state.text_spec
        usual = node_texts(ext.lemmas, ext.glosses, use_gloss)
        texts = [t if t is not None else u for t, u in zip(ext.texts, usual)]
        x_new = F.normalize(torch.nan_to_num(get_encoder(encoder).encode(texts).float().cpu()), dim=1)
        x = torch.cat([state.x, x_new])
        with torch.no_grad():  # every added concept: their rows stay a full re-propagation over all of them
            rows = state.model.predict_rows(x, state.model.operators(graph), rows=torch.arange(base, n + k))
        state.graph, state.x = graph, x
        clf.replace_added_rows(rows[:n - base])
        clf.extend(rows[n - base:], ext.wnids, ext.names, ext.lemmas)
    for e in entries:
        node, existed = planner.placed[e.name]
        res = replace(clf.resolver.resolve(clf.wnids[node]), label=e.name)
        (report.existing if existed else report.added).append(res)
        if not existed:
            state.added.append(e.spec())
        elif e.name in report.other_senses:
            logger.info("%r is already a node of the run (%s): nothing changed; to add another of its senses, "
                        "give sense=", e.name, res.synset)
    report.new_nodes = k
    logger.info("added %d concept(s) (%d new node(s)) in one propagation; %d already node(s)", len(report.added), k,
                len(report.existing))
    return report


def add_concept(clf: Any, word_or_wnid: str, parents: Sequence[str] | str | None = None,
                description: str | None = None, sense: str | None = None,
                aliases: Sequence[str] | None = None) -> ResolvedLabel:
    """Add one concept to a loaded classifier and predict its row with the trained model (no weight changes).

    Args:
        clf: A :class:`~kgzsl.inference.classifier.ZeroShotClassifier` loaded from a run folder.
        word_or_wnid: A word (``"okapi"``, ``"e-scooter"``), a synset name or a wnid.
        parents: Makes it a class of your own (node ``x:<word>``) under these nodes: words, synset
            names or wnids (WordNet nouns missing from the graph are attached too). Without parents
            the word must be a WordNet noun.
        description: Text the new class's feature is computed from (``"word: description"``); the
            word alone when None. For WordNet nouns the usual node text (lemmas, gloss per config) is used.
        sense: For ambiguous WordNet words: the synset name or wnid meant.
        aliases: Other labels for a class of your own.

    Returns:
        The concept resolved to its node (an existing one if the graph has it already; then nothing
        changes, and a warning says so).

    Raises:
        AmbiguousConceptError: If the word has several noun senses; it lists them with glosses.
        ConceptError: If an unknown word has no parents, a parent cannot be resolved, or the
            arguments do not fit together, said of the concept (``add_concept('teapot'): aliases= are
            for your own classes ...``; on the command line ``add-concept 'teapot': --aliases ...``).
    """
    word = str(word_or_wnid).strip()
    if not word:
        raise ConceptError("empty concept: give a word, a synset name or a wnid")
    entry = {"name": word, "parents": parents or None, "description": description, "sense": sense,
             "aliases": list(aliases) if aliases else None}
    report = add_concepts(clf, [{k: v for k, v in entry.items() if v is not None}])  # its problems said of it
    if report.existing:  # asked to add one concept, nothing was added: said where a script sees it
        logger.warning("%r is already a node of the run (%s): nothing changed", word, report.existing[0].synset)
    return (report.added or report.existing)[0]


def save_concepts(clf: Any, path: str | Path) -> Path:
    """Write the concepts added to ``clf`` as a YAML taxonomy file (atomically); empty fields are left out."""
    import yaml

    added = clf.concepts.added if clf.concepts is not None else []
    path = Path(path)
    write_text(path, yaml.safe_dump(added, sort_keys=False, allow_unicode=True))
    return path


def load_concepts(clf: Any, path: str | Path) -> list[ResolvedLabel]:
    """Add every concept of a taxonomy file (YAML or CSV; see :mod:`kgzsl.graph.taxonomy`) to ``clf`` at once.

    Returns:
        Each entry resolved to its node, in file order (existing nodes included).

    Raises:
        kgzsl.errors.NotFoundError: If the file does not exist.
        kgzsl.graph.taxonomy.TaxonomyError: Listing every problem of the file (nothing is added then).
    """
    entries = read_taxonomy(path)
    report = add_concepts(clf, entries)
    found = {r.label: r for r in report.added + report.existing}
    return [found[e.name] for e in entries]
