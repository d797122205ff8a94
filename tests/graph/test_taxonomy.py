"""Taxonomy entries: each error case (named by entry and line), ordering, and build-graph --taxonomy."""

from __future__ import annotations

import pytest

from kgzsl.graph.taxonomy import TaxonomyError, parse_concept, parse_taxonomy, topological_order
from kgzsl.graph.taxonomy_files import read_taxonomy

from conftest import requires_wordnet

def _write(tmp_path, text, name="t.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_children_come_after_their_parents():
    entries = parse_taxonomy([{"name": "c", "parents": "b"}, {"name": "b", "parents": ["a"]},
                              {"name": "a", "parents": "dog"}, {"name": "d", "parents": "dog"}])
    assert [e.name for e in topological_order(entries)] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("text, message", [
    ("- name: a\n  parents: [b]\n- name: b\n  parents: c\n- name: c\n  parents: a\n",
     r"t\.yaml:\d: entry '\w': the parents form a cycle \('(\w)' → '\w' → '\w' → '\1'"),
    ("- name: a\n  parents: a\n", r"t\.yaml:1: entry 'a': the parents form a cycle"),
    ("- name: Desk Lamp\n  parents: lamp\n- name: desk lamp\n  parents: lamp\n",
     r"t\.yaml:3: entry 'desk lamp': 'desk lamp' is already the name or an alias of entry 'Desk Lamp' \(\S*t\.yaml:1\)"),
    ("- name: a\n  parents: lamp\n  aliases: [b]\n- name: b\n  parents: lamp\n",
     r"t\.yaml:4: entry 'b': 'b' is already the name or an alias of entry 'a'"),
    ("- name: a\n  parents: lamp\n  colour: red\n", r"t\.yaml:1: entry 'a': unknown field\(s\) colour"),
    ("- parents: lamp\n", r"t\.yaml:1: 'name' is missing or empty"),
    ("- name: a\n  parents: [lamp, [x]]\n", r"t\.yaml:1: entry 'a': 'parents' must be a list of non-empty strings"),
    ("- name: a\n  parents: lamp\n  description: [x]\n", r"t\.yaml:1: entry 'a': 'description' must be a string"),
    ("- name: a\n  aliases: b\n", r"t\.yaml:1: entry 'a': 'aliases' are for your own classes"),
    ("- name: a\n  parents: lamp\n  sense: lamp.n.01\n", r"entry 'a': give 'sense' .* or 'parents'"),
    ("- 3.5\n- [a, b]\n", r"t\.yaml:2: an entry must be a mapping"),
    ("name: a\nparents: lamp\n", r"must hold a YAML list of entries"),
    ("- name: a\n  parents: [lamp\n", r"is not valid YAML"),
    # YAML 1.1 makes booleans of these: they became classes named 'True' and 'False'
    ("- name: yes\n  parents: fish\n", r"t\.yaml:1: 'name' is True, not a name; .* put it in quotes"),
    ("- name: a\n  parents: [fish, off]\n", r"entry 'a': 'parents' must be .* got \['fish', False\]; .* in quotes"),
    ("- name: a\n  parents: fish\n  description: no\n", r"entry 'a': 'description' must be a string, got False; "),
    # a label list is comma-separated: such a class could never be named in one
    ("- name: comma, fish\n  parents: fish\n", r"entry 'comma, fish': a name or alias cannot hold a comma"),
    ("- name: a\n  parents: fish\n  aliases: [b, 'c,d']\n", r"entry 'a': a name or alias cannot hold a comma \('c,d'\)"),
])
def test_each_problem_is_one_line_naming_entry_and_line(tmp_path, text, message):
    with pytest.raises(TaxonomyError, match=message):
        read_taxonomy(_write(tmp_path, text))


def test_all_problems_are_reported_together(tmp_path):
    with pytest.raises(TaxonomyError) as info:
        read_taxonomy(_write(tmp_path, "- name: a\n  parents: a\n- name: b\n  colour: red\n- name: a\n  parents: x\n"))
    lines = str(info.value).splitlines()
    assert lines[0].startswith("the taxonomy has problems") and len(lines) == 4
    assert [line.split(":")[1] for line in lines[1:]] == ["3", "5", "1"]  # fields, duplicates, then cycles



def test_one_concept_s_problems_are_said_of_it_not_of_a_taxonomy_item():
    with pytest.raises(TaxonomyError) as info:
        parse_concept({"name": "teapot", "aliases": ["tea pot"]})
    assert str(info.value) == ("add_concept('teapot'): aliases= are for your own classes (with parents=); a WordNet "
                               "noun already answers to its lemma names")
    assert info.value.cli_text() == ("add-concept 'teapot': --aliases are for your own classes (with --parents); a "
                                     "WordNet noun already answers to its lemma names")
    with pytest.raises(TaxonomyError) as info:  # every problem, on one line
        parse_concept({"name": "desk lamp", "parents": ["lamp", "Desk Lamp"], "sense": "lamp.n.02"})
    assert info.value.cli_text() == (
        "add-concept 'desk lamp': give --sense (a WordNet noun as itself) or --parents (your own class), not both; "
        "add-concept 'desk lamp': the parents form a cycle ('desk lamp' is its own parent); a class cannot be its "
        "own ancestor")
    assert "item 1" not in str(info.value) and "taxonomy" not in str(info.value)
    assert parse_concept("okapi") == parse_taxonomy(["okapi"])[0]

@requires_wordnet
def test_build_graph_places_your_classes_under_wordnet(tmp_path):
    from kgzsl.graph import KnowledgeGraph
    from kgzsl.graph.build import build_taxonomy_graph
    from kgzsl.inference.labels import LabelResolver
    from kgzsl.graph.wordnet import load_wordnet

    entries = read_taxonomy(_write(tmp_path, "- name: coffee maker\n  parents: kitchen appliance\n"
                                   "  aliases: [brewer]\n- name: pod machine\n  parents: [coffee maker]\n- okapi\n"))
    graph = build_taxonomy_graph(entries, ["n02121620"]).save(tmp_path / "g")
    graph = KnowledgeGraph.load(tmp_path / "g")
    mine = graph.index["x:coffee-maker"]
    assert graph.wnids[-2:] == ["x:coffee-maker", "x:pod-machine"] and graph.lemmas[mine] == ["coffee_maker", "brewer"]
    assert [graph.names[p] for p in graph.parents[mine]] == ["kitchen_appliance.n.01"]
    assert graph.parents[graph.index["x:pod-machine"]] == [mine]
    assert "okapi.n.01" in graph.names and "cat.n.01" in graph.names and len(graph.subgraph_roots()) == 1
    assert graph.manifest["counts"]["taxonomy_classes"] == 2 and graph.manifest["counts"]["nodes"] == graph.num_nodes
    # the names are labels: before WordNet's coffee_maker.n.01 (not a node here), and the alias too
    resolver = LabelResolver(graph.wnids, graph.names, graph.lemmas, wordnet=load_wordnet)
    assert resolver.resolve("Coffee maker").wnid == "x:coffee-maker" == resolver.resolve("brewer").wnid


@requires_wordnet
def test_build_graph_checks_every_parent_first(tmp_path):
    from kgzsl.graph.build import build_taxonomy_graph

    entries = read_taxonomy(_write(tmp_path, "- name: a\n  parents: zzqxblorp\n- name: b\n  parents: crane\n"
                                   "- name: c\n  parents: n99999999\n- blorptastic gizmo\n"))
    with pytest.raises(TaxonomyError) as info:
        build_taxonomy_graph(entries, ["n02121620"])
    text = str(info.value)
    assert "t.yaml:1: entry 'a': parent 'zzqxblorp': neither another entry's name nor a WordNet noun" in text
    assert "t.yaml:3: entry 'b': parent 'crane': ambiguous WordNet noun: crane.n.01" in text
    assert "t.yaml:5: entry 'c': parent 'n99999999'" in text
    assert len(text.splitlines()) == 4  # the parents; the parentless non-noun is reported once they are fixed
