"""Sense choice on real WordNet: everyday ambiguous words take the sense a photo shows."""

from __future__ import annotations

import pytest

from kgzsl.inference.labels import LabelResolver

from conftest import wordnet_available

pytestmark = pytest.mark.skipif(not wordnet_available(), reason="WordNet 3.0 is not installed")

WORDS = ["scooter", "TV", "monitor", "seal", "pitcher", "palm", "red fox", "boxer", "kite", "cell", "crane",
         "mouse", "bat", "dog", "man", "boy", "baby", "soldier", "pilot", "fork", "book", "plane",
         "light", "stairs", "cat", "car", "cutlery", "hedgehog"]
EXPECTED = {"scooter": "motor_scooter.n.01", "TV": "television_receiver.n.01", "monitor": "monitor.n.05",
            "seal": "seal.n.09", "pitcher": "pitcher.n.02", "palm": "palm.n.03", "red fox": "red_fox.n.03",
            "boxer": "boxer.n.04", "kite": "kite.n.04", "cell": "cellular_telephone.n.01", "crane": "crane.n.04",
            "mouse": "mouse.n.04", "bat": "bat.n.01", "dog": "dog.n.01", "man": "man.n.01", "boy": "male_child.n.01",
            "baby": "baby.n.01", "soldier": "soldier.n.01", "pilot": "pilot.n.01", "fork": "fork.n.01",
            "book": "book.n.02", "plane": "airplane.n.01", "light": "light.n.02", "stairs": "stairs.n.01",
            "cat": "cat.n.01", "car": "car.n.01", "cutlery": "cutlery.n.02", "hedgehog": "porcupine.n.01"}


def _over(synsets: list, seen: tuple[str, ...] = (), **kwargs) -> LabelResolver:
    """A resolver whose graph is exactly ``synsets`` (those named in ``seen`` are backbone classes)."""
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    return LabelResolver([f"n{s.offset():08d}" for s in synsets], [s.name() for s in synsets],
                         [s.lemma_names() for s in synsets], wordnet=lambda: wn,
                         seen=[i for i, s in enumerate(synsets) if s.name() in seen], **kwargs)


@pytest.fixture(scope="module")
def resolver() -> LabelResolver:
    """Every noun sense of the words, the ImageNet-1k classes and all their ancestors, as one graph."""
    return _graph_of(WORDS)


def _graph_of(words: list[str]) -> LabelResolver:
    """A resolver over every noun sense of ``words``, the ImageNet-1k classes and all their ancestors."""
    from kgzsl.graph import resolve_wnids
    from kgzsl.graph.wordnet import load_wordnet, synset_from_wnid
    from kgzsl.vision.backbones import imagenet_wnids

    wn = load_wordnet()
    seen = [synset_from_wnid(wn, w) for w in imagenet_wnids()]
    synsets = {s for w in words for s in wn.synsets(w.replace(" ", "_"), pos="n")} | set(seen)
    ancestors_of_seen = {s: set(s.closure(lambda x: x.hypernyms() + x.instance_hypernyms())) for s in seen}
    for ups in ancestors_of_seen.values():
        synsets |= ups
    nodes = sorted(synsets, key=lambda s: s.offset())
    index = {s: i for i, s in enumerate(nodes)}
    requested = set(resolve_wnids("imagenet1k,imagenet21k")[0])
    return LabelResolver([f"n{s.offset():08d}" for s in nodes], [s.name() for s in nodes],
                         [s.lemma_names() for s in nodes], wordnet=lambda: wn, seen=[index[s] for s in seen],
                         requested=[i for i, s in enumerate(nodes) if f"n{s.offset():08d}" in requested],
                         grounded=lambda: {index[a] for s, ups in ancestors_of_seen.items() for a in ups | {s}})


@pytest.mark.parametrize("labels, word, sense", [
    (["bass", "trout", "goldfish"], "bass", "bass.n.08"),  # the fish, not the instrument (alone: bass.n.07)
    (["ball", "bat", "glove"], "bat", "bat.n.05"),  # the club
    (["cat", "dog", "bat"], "bat", "bat.n.01"),  # the animal, as alone
    (["bass", "guitar", "drum"], "bass", "bass.n.07"),
    (["ball", "bat", "cat"], "bat", "bat.n.01"),  # as many animals as artifacts: the usual sense
    (["silversides", "trout"], "silversides", "silversides.n.01"),  # a fish already: not another fish
    (["bass", "trout", "bass.n.08"], "bass", "bass.n.07"),  # the fish is taken by another label
])
def test_an_ambiguous_word_is_read_as_the_kind_the_other_labels_are(labels, word, sense):
    resolver = _graph_of(["bass", "trout", "goldfish", "sole", "ball", "bat", "glove", "cat", "dog", "guitar",
                          "drum", "silversides"])
    resolved = {r.label: r for r in resolver.resolve_all(labels)}
    assert resolved[word].synset == sense
    alone = resolver.resolve(word)
    assert set(resolved[word].alternatives) | {resolved[word].synset} == set(alone.alternatives) | {alone.synset}


def test_a_usual_sense_stays_and_the_sense_of_the_others_kind_is_named(caplog):
    resolver = _graph_of(["trout", "goldfish", "sole", "cat", "dog", "crane", "mouse", "car", "chair", "ball",
                          "glove", "Eiffel Tower"])

    def read(labels: list[str], word: str):
        return {r.label: r for r in resolver.resolve_all(labels)}[word]

    # "cat" (18 of 18 tagged uses the feline) and "dog" beside artifacts: read as a whip, a firedog or a
    # Caterpillar tractor, such a label took photos of horses and windmills
    for labels, word in ((["cat", "car", "chair"], "cat"), (["dog", "car", "chair"], "dog"),
                         (["cat", "ball", "glove"], "cat"), (["Eiffel Tower", "cat"], "cat")):
        res = read(labels, word)
        assert (res.synset, res.senses) == (f"{word}.n.01", ()), labels
    # "sole" is a shoe's sole in all 3 of its uses: it stays, and the notice names the flatfish to pass
    with caplog.at_level("INFO", logger="kgzsl"):
        sole = read(["trout", "sole", "goldfish"], "sole")
    assert sole.synset == "sole.n.01" and "for sole.n.04 (right-eyed flatfish" in caplog.text
    assert read(["trout", "sole.n.04", "goldfish"], "sole.n.04").synset == "sole.n.04"
    # a label whose senses are of several kinds (the machine or the bird; the device or the rodent) says nothing
    for other in ("crane", "mouse"):
        cat = read(["cat", other], "cat")
        assert (cat.synset, cat.senses) == ("cat.n.01", ())


def test_senses_for_the_image_narrow_to_the_kind_of_the_others():
    resolver = _graph_of(["mouse", "keyboard", "monitor", "crane", "heron", "stork", "rat"])

    def read(labels: list[str], word: str):
        res = {r.label: r for r in resolver.resolve_all(labels)}[word]
        return [resolver.names[i] for i in (res.index, *res.senses)]

    assert read(["mouse"], "mouse") == ["mouse.n.04", "mouse.n.01"]  # alone: the image picks
    assert read(["monitor", "keyboard", "mouse"], "mouse") == ["mouse.n.04"]  # beside devices: no rodent
    assert read(["rat", "mouse"], "mouse") == ["mouse.n.01"]  # beside a rat: the rodent, the sense named first
    assert "mouse.n.04" in {r.label: r for r in resolver.resolve_all(["rat", "mouse"])}["mouse"].alternatives
    assert read(["crane", "heron", "stork"], "crane") == ["crane.n.05"]  # the bird
    assert read(["crane", "mouse"], "crane") == ["crane.n.04", "crane.n.05"]  # no kind leads: both stay
    assert read(["crane", "crane.n.05"], "crane") == ["crane.n.04"]  # the bird is the other label's: not picked twice


def test_two_labels_never_both_pick_one_sense():
    resolver = _graph_of(["castle", "palace"])
    both = {r.label: r for r in resolver.resolve_all(["castle", "palace"])}
    castle, palace = ([resolver.names[i] for i in (r.index, *r.senses)] for r in (both["castle"], both["palace"]))
    assert "palace.n.01" in palace and "palace.n.01" not in castle  # named after "palace": that label keeps it


def test_a_sense_is_listed_once():
    resolver = _graph_of(["silversides"])
    res = resolver.resolve("silversides")  # nltk lists silversides.n.01 twice
    assert res.synset not in res.alternatives and len(set(res.alternatives)) == len(res.alternatives)


@pytest.mark.parametrize("word", WORDS)
def test_everyday_ambiguous_words_take_the_sense_a_photo_shows(resolver, word):
    assert resolver.resolve(word).synset == EXPECTED[word]


def test_equally_plausible_senses_stay_for_the_image_to_choose(resolver):
    crane = resolver.resolve("crane")
    assert [resolver.names[i] for i in crane.senses] == ["crane.n.05"]  # the bird, also an ImageNet-1k class
    assert resolver.resolve("TV").senses == ()  # the broadcast medium is not something a photo shows
    assert "sealing_wax.n.01" in resolver.resolve("seal").alternatives


def test_a_word_whose_usual_sense_is_the_best_leaves_the_image_no_other_sense(resolver):
    # the big cat and the railway car are seen physical senses too, but the tagged corpus settles both words
    assert resolver.resolve("cat").senses == () and "big_cat.n.01" in resolver.resolve("cat").alternatives
    assert resolver.resolve("car").senses == () and "car.n.02" in resolver.resolve("car").alternatives
    assert [resolver.names[i] for i in resolver.resolve("crane").senses] == ["crane.n.05"]  # no tagged use: unsettled
    # cutter.n.06 ("a cutting tool", over the seen hatchet and cleaver) only lists "cutlery" as a synonym: no peer
    assert resolver.resolve("cutlery").senses == () and "cutter.n.06" in resolver.resolve("cutlery").alternatives
    # the other way round: ImageNet-1k's "porcupine, hedgehog" only lists the word; the hedgehog, named after it, stays
    assert [resolver.names[i] for i in resolver.resolve("hedgehog").senses] == ["hedgehog.n.02"]


def test_without_backbone_classes_a_person_wins_only_as_the_usual_meaning():
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()

    def resolver(word: str, seen: tuple[str, ...] = ()) -> LabelResolver:
        return _over(wn.synsets(word, pos="n"), seen)

    # the ball player is 15 of the word's 18 tagged uses: with no backbone class to say otherwise, he wins
    assert resolver("pitcher").resolve("pitcher").synset == "pitcher.n.01"
    # once the jug is one of the backbone's classes, the jug
    assert resolver("pitcher", seen=("pitcher.n.02",)).resolve("pitcher").synset == "pitcher.n.02"
    # a person who is not the usual meaning (the bass singer, no tagged use) comes after things, and
    # among things (none tagged) those named "bass" (the instrument, the fish) before sea_bass.n.01
    assert resolver("bass").resolve("bass").synset == "bass.n.07"
    # among people, the usual meaning
    assert resolver("boy").resolve("boy").synset == "male_child.n.01"


def test_a_usual_sense_missing_from_the_graph_is_named_for_adding_when_the_graph_can_grow():
    from kgzsl.graph.wordnet import load_wordnet
    from kgzsl.inference.labels import NotInGraphError

    wn = load_wordnet()
    # the graph has "sink"'s sinkhole and cesspool and "chicken"'s fowl and wimp, but not the plumbing
    # fixture nor the meat (the usual meanings: 4 of 4 and 16 of 26 tagged uses)
    nodes = [wn.synset(n) for n in ("sinkhole.n.01", "cesspool.n.01", "chicken.n.02", "wimp.n.01")]

    def resolver(can_add: bool, seen: tuple[str, ...] = ()) -> LabelResolver:
        return _over(nodes, seen, can_add=lambda: can_add)

    with pytest.raises(NotInGraphError, match="usually means sink.n.01") as caught:
        resolver(True).resolve("sink")
    assert caught.value.labels == ["sink.n.01"]
    with pytest.raises(NotInGraphError) as caught:
        resolver(True).resolve_all(["chicken", "sink"])
    assert caught.value.labels == ["sink.n.01"]  # what to add, not the word
    assert resolver(False).resolve("sink").synset == "sinkhole.n.01"  # the graph cannot grow: its best sense
    assert resolver(True, seen=("sinkhole.n.01",)).resolve("sink").synset == "sinkhole.n.01"  # a backbone class
    assert resolver(True).resolve("chicken").synset == "chicken.n.02"  # the fowl has tagged uses of its own


def test_an_open_compound_that_wordnet_writes_closed_is_found():
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    resolver = _over([wn.synset(n) for n in ("wineglass.n.01", "cellular_telephone.n.01", "laptop.n.01",
                                             "backpack.n.01")])
    assert [r.synset for r in resolver.resolve_all(["wine glass", "cell phone", "lap top", "back pack"])] == \
        ["wineglass.n.01", "cellular_telephone.n.01", "laptop.n.01", "backpack.n.01"]
    assert resolver.resolve("wine glass").label == "wine glass"  # the user's label is kept
    with pytest.raises(Exception, match="unknown label 'stop sign'"):
        resolver.resolve("stop sign")  # neither way a WordNet noun


def test_a_hyphen_for_a_space_is_found_and_wordnets_own_hyphens_are_kept():
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    resolver = _over([wn.synset(n) for n in ("light_bulb.n.01", "jersey.n.03", "golden_retriever.n.01")])
    assert [r.synset for r in resolver.resolve_all(["light-bulb", "T-shirt", "golden-retriever"])] == \
        ["light_bulb.n.01", "jersey.n.03", "golden_retriever.n.01"]  # t-shirt is WordNet's own hyphenated lemma
    with pytest.raises(Exception, match="unknown label 'side-cutter'"):
        resolver.resolve("side-cutter")  # neither way a WordNet noun


def test_a_leading_article_is_not_part_of_the_name_and_a_prompt_gets_a_hint():
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    resolver = _over([wn.synset(n) for n in ("cat.n.01", "apple.n.01", "wineglass.n.01", "the_hague.n.01")])
    assert [r.synset for r in resolver.resolve_all(["a cat", "an apple", "a wine glass"])] == \
        ["cat.n.01", "apple.n.01", "wineglass.n.01"]
    assert resolver.resolve("The Hague").synset == "the_hague.n.01"  # the article belongs to this name
    with pytest.raises(Exception, match="not a prompt: try 'cat'"):
        resolver.resolve("a photo of a cat")


def test_among_untagged_senses_the_one_named_after_the_word_wins_and_two_uses_make_no_usual_sense():
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    nodes = [wn.synset("patty.n.01"), wn.synset("cake.n.03")]  # the patty "cake" is an ImageNet-21K class
    resolver = _over(nodes, requested=[0], can_add=lambda: True)
    assert resolver.resolve("cake").synset == "cake.n.03"  # the baked cake, named "cake"
    # "cake" is tagged twice in the cake-of-soap sense (not a node): too few uses to add it as the usual one
    assert resolver.resolve("cakes").synset == "cake.n.03"


def test_a_seen_sense_where_the_word_is_only_a_synonym_of_a_person_does_not_come_first():
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    nodes = [wn.synset("peer.n.01"), wn.synset("match.n.01")]  # a "match" is a peer, an ancestor of a seen class
    assert _over(nodes, grounded=lambda: {0}).resolve("match").synset == "match.n.01"
    assert _over([wn.synset("magazine.n.01"), wn.synset("cartridge_holder.n.01")],
                 grounded=lambda: {0}).resolve("magazine").synset == "magazine.n.01"  # named after the word


def test_the_usual_sense_stays_for_the_image_to_choose_beside_a_seen_sense():
    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    nodes = [wn.synset("mouse.n.01"), wn.synset("mouse.n.04")]  # the rodent: 14 of the word's 14 tagged uses
    mouse = _over(nodes, seen=("mouse.n.04",)).resolve("mouse")
    assert mouse.synset == "mouse.n.04" and mouse.senses == (0,)  # the computer mouse first, the rodent kept
    rare = _over([wn.synset("kite.n.03"), wn.synset("kite.n.04")], seen=("kite.n.04",)).resolve("kite")
    assert rare.senses == ()  # the toy kite is never tagged: not the usual sense, the bird alone


def test_a_physical_thing_named_after_the_word_is_added_where_the_graph_has_none():
    from kgzsl.graph.wordnet import load_wordnet
    from kgzsl.inference.labels import NotInGraphError

    wn = load_wordnet()
    nodes = [wn.synset("prostitute.n.01")]  # "tart" is a synonym there; the pastries are not nodes
    with pytest.raises(NotInGraphError, match="names a physical thing as tart.n.02") as caught:
        _over(nodes, can_add=lambda: True).resolve("tart")
    assert caught.value.labels == ["tart.n.02"]
    assert _over(nodes, can_add=lambda: False).resolve("tart").synset == "prostitute.n.01"


def test_a_word_with_no_sense_in_the_graph_names_the_sense_a_photo_shows_for_adding():
    from kgzsl.graph.wordnet import load_wordnet
    from kgzsl.inference.labels import NotInGraphError

    wn = load_wordnet()
    resolver = _over([wn.synset("cat.n.01")])
    # "moon": the satellite (a natural object, 30 tagged uses), not the lunar month nor the religious leader
    expected = {"moon": "moon.n.01", "sun": "sun.n.01", "earth": "earth.n.01", "pen": "pen.n.01", "pagoda": "pagoda"}
    for word, sense in expected.items():
        with pytest.raises(NotInGraphError, match=f"add-concept RUN {sense}`") as caught:
            resolver.resolve(word)
        assert caught.value.labels == [sense]  # a word with one sense is added as the word itself
    with pytest.raises(NotInGraphError) as caught:
        resolver.resolve_all(["cat", "moon", "Eiffel Tower"])
    assert caught.value.labels == ["moon.n.01", "Eiffel Tower"]


def test_a_sense_choice_is_logged_once_per_label_and_quietly_when_the_usual_sense_won(caplog):
    import logging

    from kgzsl.graph.wordnet import load_wordnet

    wn = load_wordnet()
    resolver = _over(wn.synsets("dog", pos="n") + wn.synsets("crane", pos="n"), seen=("crane.n.04", "crane.n.05"))
    with caplog.at_level(logging.DEBUG, logger="kgzsl.inference.labels"):
        for _ in range(3):
            resolver.resolve_all(["dog", "crane"])
    told = [(r.levelno, r.getMessage().split(":")[0]) for r in caplog.records if "is ambiguous" in r.getMessage()]
    # "dog" is dog.n.01 in 42 of its 42 tagged uses: nothing a user needs to hear; "crane" is a judgement
    assert told == [(logging.DEBUG, "label 'dog' is ambiguous"), (logging.INFO, "label 'crane' is ambiguous")]


def test_two_labels_on_one_sense_are_told_the_other_senses_by_name():
    from kgzsl.graph.wordnet import load_wordnet
    from kgzsl.inference.labels import LabelError

    wn = load_wordnet()
    resolver = _over([wn.synset("porcupine.n.01"), wn.synset("hedgehog.n.02")], seen=("porcupine.n.01",))
    with pytest.raises(LabelError, match=r"'porcupine' and 'hedgehog' both resolve to porcupine\.n\.01.*another "
                                         r"sense of 'hedgehog' by its synset \(hedgehog\.n\.02\)"):
        resolver.resolve_all(["porcupine", "hedgehog"])


def test_a_word_written_with_a_capital_takes_the_sense_it_names_as_written():
    from kgzsl.graph.wordnet import load_wordnet
    from kgzsl.inference.labels import NotInGraphError

    wn = load_wordnet()
    both = _over([wn.synset("land.n.04"), wn.synset("earth.n.01")])
    assert both.resolve("Earth").synset == "earth.n.01"  # the planet, lemma "Earth"
    land_only = _over([wn.synset("land.n.04")], can_add=lambda: True)
    with pytest.raises(NotInGraphError, match=r"'Earth', written with a capital, names earth\.n\.01") as info:
        land_only.resolve("Earth")  # the planet is added on first use
    assert info.value.labels == ["earth.n.01"]
    assert land_only.resolve("earth").synset == "land.n.04"  # not a name: dry land, as before
    # a name of another kind does not win over a physical thing: "China" is the porcelain, not the country
    china = _over(wn.synsets("china", pos="n"))
    assert china.resolve("China").synset == china.resolve("china").synset == "china.n.02"
    # nor "Turkey"'s country (a place) over the bird (an animal), as lower case reads it
    turkey = _over(wn.synsets("turkey", pos="n"), can_add=lambda: True)
    assert turkey.resolve("Turkey").synset == turkey.resolve("turkey").synset == "turkey.n.01"
