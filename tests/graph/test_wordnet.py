"""The WordNet helpers shared by the graph build and new concepts: id patterns, hypernym closure."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pytest

from kgzsl.graph.wordnet import SYNSET_RE, WNID_RE, hypernym_closure, synset_from_wnid, wnid_of

from conftest import requires_wordnet


@dataclass(eq=False)
class FakeSynset:
    """Just what hypernym_closure reads of an nltk synset; parents kept in sets, as nltk does."""

    number: int
    ups: set = field(default_factory=set)
    instance_ups: set = field(default_factory=set)

    def pos(self) -> str:
        return "n"

    def offset(self) -> int:
        return self.number

    def hypernyms(self) -> set:
        return self.ups

    def instance_hypernyms(self) -> set:
        return self.instance_ups


def _taxonomy() -> dict[str, FakeSynset]:
    r"""entity(1) ← {animal(2), place(3)};  animal ← {dog(5), cat(4)};  paris(6) is an instance of place."""
    entity = FakeSynset(1)
    animal, place = FakeSynset(2, {entity}), FakeSynset(3, {entity})
    return {"entity": entity, "animal": animal, "place": place, "cat": FakeSynset(4, {animal}),
            "dog": FakeSynset(5, {animal}), "paris": FakeSynset(6, instance_ups={place})}


def test_wnid_and_synset_patterns():
    assert WNID_RE.match("n02084071") and not WNID_RE.match("n0208407") and not WNID_RE.match("v02084071")
    assert SYNSET_RE.match("dog.n.01") and not SYNSET_RE.match("run.v.01") and not SYNSET_RE.match("dog")
    assert wnid_of(FakeSynset(2084071)) == "n02084071"
    with pytest.raises(ValueError, match="is not a wnid: expected 'n' and 8 digits"):
        synset_from_wnid(None, "dog")


def test_closure_adds_missing_ancestors_breadth_first_with_numbered_edges():
    t = _taxonomy()
    new, edges = hypernym_closure([t["dog"], t["paris"]], {"n00000005": 0, "n00000006": 1})
    assert new == [t["animal"], t["place"], t["entity"]]  # numbered 2, 3, 4
    assert edges == [(0, 2, "hypernym"), (1, 3, "instance_hypernym"), (2, 4, "hypernym"), (3, 4, "hypernym")]


def test_closure_stops_at_known_nodes_and_leaves_the_index_alone():
    t = _taxonomy()
    index = {"n00000001": 0, "n00000002": 1, "n00000004": 2}
    new, edges = hypernym_closure([t["cat"]], index)
    assert new == [] and edges == [(2, 1, "hypernym")]  # animal is known: nothing above it is visited
    assert index == {"n00000001": 0, "n00000002": 1, "n00000004": 2}


def test_two_parents_are_visited_in_wnid_order():
    t = _taxonomy()
    pet = FakeSynset(9, {t["dog"], t["cat"]})  # a set: the order of iteration is not the order of ids
    new, edges = hypernym_closure([pet], {"n00000009": 0})
    assert new[:2] == [t["cat"], t["dog"]] and edges[:2] == [(0, 1, "hypernym"), (0, 2, "hypernym")]


@requires_wordnet
def test_one_reader_shared_by_threads_reads_the_same_synsets_and_counts_as_one_thread():
    """nltk reads synsets and sense counts through file handles the reader shares; threads serving
    ``predict`` share the process's one reader, so their reads must not interleave."""
    from concurrent.futures import ThreadPoolExecutor

    from kgzsl.graph.wordnet import _reader_class, load_wordnet

    reference = load_wordnet()
    words = ["moon", "pagoda", "coin", "sun", "seal", "crane", "mouse", "pitcher", "palm", "bass", "bat", "kite",
             "ring", "star", "earth", "plane", "trunk", "tank", "pen", "nut", "chip", "bow", "match", "cake"] * 4

    def read(wn, word):
        return [(s.name(), [lem.count() for lem in s.lemmas()], sorted(h.name() for h in s.hypernyms()))
                for s in wn.synsets(word, pos="n")]

    expected = [read(reference, w) for w in words]
    with warnings.catch_warnings():  # nltk warns that this WordNet has no multilingual data
        warnings.simplefilter("ignore")
        fresh = _reader_class()(reference.root, None)  # nothing cached: every synset is read from the file
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda w: read(fresh, w), words)) == expected


def test_a_kgzsl_wordnet_dir_without_wordnet_is_named_in_the_error(tmp_path, monkeypatch):
    import nltk

    from kgzsl.graph import wordnet

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("KGZSL_WORDNET_DIR", str(empty))
    monkeypatch.setattr(wordnet, "DEBIAN_WORDNET_DIR", tmp_path / "no-debian-wordnet")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "no-nltk-data")])
    wordnet._load_wordnet.cache_clear()
    try:
        with pytest.raises(wordnet.WordNetNotFoundError, match=f"KGZSL_WORDNET_DIR is set to {empty}, which holds "
                                                               "no data.noun and index.noun"):
            wordnet.load_wordnet()
        monkeypatch.delenv("KGZSL_WORDNET_DIR")
        with pytest.raises(wordnet.WordNetNotFoundError) as plain:
            wordnet.load_wordnet()
        assert "KGZSL_WORDNET_DIR is set" not in str(plain.value) and "apt-get install wordnet-base" in str(plain.value)
    finally:
        wordnet._load_wordnet.cache_clear()  # the next test loads the real WordNet again


@requires_wordnet
def test_gloss_is_wordnets_definition_or_nothing():
    from kgzsl.graph.wordnet import gloss

    assert gloss("eiffel.n.01").startswith("French engineer who constructed the Eiffel Tower")
    assert gloss("standing_desk") == "" and gloss("zzz.n.99") == "" and gloss("n02084071") == ""
