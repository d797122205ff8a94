import pytest

from kgzsl.inference.labels import LabelError, LabelResolver

from conftest import requires_wordnet


def _toy_resolver():
    return LabelResolver(["x0", "x1", "x2"], ["entity.n.01", "animal.n.01", "hot_dog.n.01"],
                         [["entity"], ["animal", "beast"], ["hot_dog", "frank"]], wordnet=None)


def test_lemma_matching_without_wordnet():
    r = _toy_resolver()
    assert r.resolve("Hot dog").index == 2 and r.resolve("beast").synset == "animal.n.01"
    assert r.resolve("animal.n.01").index == 1
    with pytest.raises(LabelError, match="did you mean animal"):
        r.resolve("animl")


def test_a_typo_suggests_the_words_a_few_edits_away_short_words_too():
    from kgzsl.inference.labels import close_words

    words = ["cat", "cattle", "dog", "dingo", "tea", "tench", "elephant", "element", "do"]
    # a swapped pair is one edit ("cta"), which difflib's similarity alone missed for short words
    assert close_words("cta", words) == ["cat"]
    assert close_words("dgo", words) == ["dog", "do"]  # a swap before a letter left out; not "dingo"
    assert close_words("teh", words) == ["tea"]
    assert close_words("elephnat", words)[0] == "elephant"
    assert close_words("xqzv", words) == []
    r = LabelResolver(["n1", "n2"], ["cat.n.01", "dog.n.01"], [["cat"], ["dog"]], wordnet=None)
    with pytest.raises(LabelError, match=r"unknown label 'cta'.*did you mean cat\?"):
        r.resolve("cta")


def test_list_errors():
    r = _toy_resolver()
    with pytest.raises(LabelError, match="empty"):
        r.resolve_all([])
    with pytest.raises(LabelError, match="empty label"):
        r.resolve_all(["animal", " "])
    with pytest.raises(LabelError) as err:  # two empty labels: the message once, with cat.n.01's own wnid
        r.resolve_all(" , ")
    assert str(err.value).count("empty label") == 1 and "('cat.n.01') or a wnid ('n02121620')" in str(err.value)
    with pytest.raises(LabelError, match="'animal' and 'beast' both resolve to animal.n.01"):
        r.resolve_all(["animal", "beast"])
    assert [x.index for x in r.resolve_all("entity, frank")] == [0, 2]


@requires_wordnet
def test_wordnet_resolution_picks_most_frequent_sense_in_graph():
    from kgzsl.graph import build_wordnet_graph, load_wordnet

    # crane the bird (n02012849) and crane the machine (n03126707) are both in the graph
    graph = build_wordnet_graph(["n02012849", "n03126707", "n02121620", "n02099601"])
    r = LabelResolver(graph.wnids, graph.names, graph.lemmas, wordnet=load_wordnet)
    crane = r.resolve("crane")
    assert crane.synset in {"crane.n.04", "crane.n.05"} and len(crane.alternatives) == 1
    assert r.resolve("cats").synset == "cat.n.01"  # morphology
    assert r.resolve("Golden Retriever").wnid == "n02099601"
    assert r.resolve("n02121620").synset == "cat.n.01"
    with pytest.raises(LabelError, match="none of its senses is a node"):
        r.resolve("pagoda")
    with pytest.raises(LabelError, match="not a node of this graph"):
        r.resolve("n01440764")  # tench: not an ancestor of these classes
    with pytest.raises(LabelError, match="not a WordNet noun"):
        r.resolve("qwertyuiop")
