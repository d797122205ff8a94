"""Label suggestions on a hand-built node list: prefixes of lemmas, synset names and wnids."""

from __future__ import annotations

from kgzsl.serve.labels import LabelIndex

WNIDS = ["n1", "n2", "n3", "n4", "n5"]
NAMES = ["coffee.n.01", "chocolate.n.03", "coffeepot.n.01", "golden_retriever.n.01", "cat.n.01"]
LEMMAS = [["coffee", "java"], ["chocolate", "coffee"], ["coffeepot"], ["golden_retriever"], ["cat", "true_cat"]]


def _index() -> LabelIndex:
    return LabelIndex(WNIDS, NAMES, LEMMAS)


def test_exact_word_first_and_ambiguous_words_suggest_the_synset():
    hits = _index().suggest("Coffee")
    # "coffee" names two nodes: each suggestion carries its synset name, the node named after the word first
    assert [(h["label"], h["synset"]) for h in hits] == [("coffee.n.01", "coffee.n.01"),
                                                        ("chocolate.n.03", "chocolate.n.03"),
                                                        ("coffeepot", "coffeepot.n.01")]
    assert hits[1]["lemma"] == "coffee"


def test_words_with_spaces_synset_names_and_wnids():
    index = _index()
    assert index.suggest("golden ret") == [{"label": "golden retriever", "synset": "golden_retriever.n.01",
                                            "wnid": "n4", "lemma": "golden retriever"}]
    assert index.suggest("golden_") == index.suggest("golden ")
    assert [h["wnid"] for h in index.suggest("cat.n")] == ["n5"]
    assert [h["synset"] for h in index.suggest("n5")] == ["cat.n.01"]
    assert [h["label"] for h in index.suggest("true")] == ["true cat"]


def test_limits_and_misses():
    index = _index()
    assert len(index.suggest("c", limit=2)) == 2
    assert len({h["wnid"] for h in index.suggest("c", limit=10)}) == len(index.suggest("c", limit=10))  # one per node
    assert index.suggest("zzz") == [] and index.suggest("  ") == [] and index.suggest("cat", limit=0) == []


def test_the_backbone_s_own_classes_come_right_after_the_exact_matches():
    wnids, names = WNIDS + ["n6", "n7"], NAMES + ["goldeneye.n.02", "goldenrod.n.01"]
    lemmas = LEMMAS + [["goldeneye"], ["goldenrod"]]
    plain = LabelIndex(wnids, names, lemmas).suggest("golden")
    assert [h["label"] for h in plain] == ["goldeneye", "goldenrod", "golden retriever"]  # shorter names first
    # golden retriever is one of the backbone's classes (node 3): what a user typing "golden" most likely wants
    preferred = LabelIndex(wnids, names, lemmas, preferred=[3]).suggest("golden")
    assert [h["label"] for h in preferred] == ["golden retriever", "goldeneye", "goldenrod"]
    assert LabelIndex(wnids, names, lemmas, preferred=[3]).suggest("cat")[0]["synset"] == "cat.n.01"  # exact first
