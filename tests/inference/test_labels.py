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
    with pytest.raises(LabelError) as err:
        r.resolve("animals")
    assert "could not be loaded" not in str(err.value)  # no WordNet was asked for: nothing failed


def test_an_unknown_word_says_wordnet_could_not_be_loaded_when_it_failed():
    def missing():
        raise RuntimeError("WordNet 3.0 was not found")

    r = LabelResolver(["x0", "x1"], ["entity.n.01", "animal.n.01"], [["entity"], ["animal"]], wordnet=missing)
    with pytest.raises(LabelError, match=r"unknown label 'animals': not a lemma of this graph's nodes, and WordNet, "
                                         r"which knows plurals and other words for them, could not be loaded here "
                                         r"\(WordNet 3.0 was not found\); did you mean animal"):
        r.resolve("animals")


def test_a_closed_compound_suggests_the_open_one_first():
    from kgzsl.inference.labels import close_words

    words = ["clown_anemone_fish", "blowfish", "cowfish", "clown", "fish", "clown_fish_x", "anemone_fish"]
    assert close_words("clownfish", words)[:2] == ["clown_anemone_fish", "blowfish"]  # then the typos
    assert close_words("cowfish", words)[0] == "cowfish"  # a known word of one part: itself first
    assert close_words("fish", words) == ["fish"]  # short words: no compound search


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
    with pytest.raises(LabelError, match=r"empty label \(labels 2, 4 of 4: two commas in a row"):
        r.resolve_all(["animal", "", "frank", " "])  # where they are, as the command line splits "animal,,frank, "
    with pytest.raises(LabelError, match="'animal' and 'beast' both resolve to animal.n.01"):
        r.resolve_all(["animal", "beast"])
    assert [x.index for x in r.resolve_all("entity, frank")] == [0, 2]


def test_a_word_in_another_script_gets_no_one_letter_suggestions():
    from kgzsl.inference.labels import close_words

    words = ["a", "b", "cat", "x", "dog"]
    assert close_words("猫", words) == [] and close_words("q", words) == []  # one edit away, but no letter kept
    r = LabelResolver(["n1", "n2", "n3"], ["a.n.01", "cat.n.01", "dog.n.01"], [["a"], ["cat"], ["dog"]], wordnet=None)
    for label in ("猫", "🐱", "42"):
        with pytest.raises(LabelError, match=rf"^unknown label '{label}': .*; labels are English words \(WordNet "
                           r"nouns\), synset names \('dog.n.01'\) or wnids \('n02084071'\)$"):
            r.resolve(label)


@requires_wordnet
def test_a_clash_is_told_first_and_missing_nodes_without_add_concept_advice():
    """A caller adds missing WordNet nouns itself: telling it to run add-concept hid the real error."""
    from kgzsl.graph import build_wordnet_graph, load_wordnet
    from kgzsl.inference.labels import NotInGraphError

    graph = build_wordnet_graph(["n02121620", "n02099601"])
    r = LabelResolver(graph.wnids, graph.names, graph.lemmas, wordnet=load_wordnet)
    with pytest.raises(LabelError) as err:
        r.resolve_all(["pagoda", "cat", "true cat"])
    assert not isinstance(err.value, NotInGraphError)
    assert str(err.value) == ("labels 'cat' and 'true cat' both resolve to cat.n.01 (n02121620); keep one of them; "
                              "also not nodes of this graph yet: 'pagoda' (predict adds WordNet nouns on first use)")
    with pytest.raises(NotInGraphError) as err:  # the clash fixed: the missing node is what is left
        r.resolve_all(["pagoda", "cat"])
    assert err.value.labels == ["pagoda"]


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


def test_an_unknown_name_is_told_it_can_become_a_class_of_ones_own_in_either_wording():
    r = LabelResolver(["n1", "n2"], ["desk.n.01", "dog.n.01"], [["desk"], ["dog"]], wordnet=None)
    with pytest.raises(LabelError) as err:
        r.resolve_all(["standing desk", "dog"])
    assert "clf.add_concept('standing desk', parents=[...])" in str(err.value)
    assert "`kgzsl add-concept RUN 'standing desk' --parents ...`" in err.value.cli_text()
    with pytest.raises(LabelError) as err:  # a prompt gets its own advice instead
        r.resolve("a photo of a dog")
    assert "add_concept" not in str(err.value)


def test_a_label_with_a_comma_is_told_it_is_two_labels_not_to_add_it():
    r = _toy_resolver()
    with pytest.raises(LabelError, match="a label holds no comma; give one label here") as err:
        r.resolve("animal,entity")
    assert "add-concept" not in err.value.cli_text() and "add_concept" not in str(err.value)


def test_ids_in_capitals_and_words_with_accents_resolve():
    r = LabelResolver(["n02121620", "x1"], ["cat.n.01", "hot_dog.n.01"], [["cat"], ["hot_dog", "frank"]],
                      wordnet=None)
    assert r.resolve("N02121620").index == 0 and r.resolve("Cat.N.01").index == 0
    found = r.resolve("hôt dög")
    assert found.index == 1 and found.label == "hôt dög"  # reported as given
    with pytest.raises(LabelError, match="unknown label 'crème'"):
        r.resolve("crème")
