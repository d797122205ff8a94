"""ConceptNet: the streaming reader, the concept mapping, the 2-hop graph, merging, the CLI."""

from __future__ import annotations

import gzip
import inspect
import json
from pathlib import Path

import pytest
import torch

from kgzsl.errors import InputError
from kgzsl.graph import KnowledgeGraph
from kgzsl.graph.conceptnet import (ConceptClass, ConceptMapper, ReadStats, _csr, build_conceptnet_graph,
                                    build_source_graph, classes_from_wordnet, concept_terms, iter_assertions,
                                    merge_graphs, rank_neighbours)
from kgzsl.graph.conceptnet_fixture import CAT_FILLERS, FIXTURE_CLASSES, write_fixture

from conftest import requires_wordnet, toy_graph

OKAPI, ZEBRA, GIRAFFE, DOG, CAT, SCOOTER = (c.id for c in FIXTURE_CLASSES)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_fixture(tmp_path_factory.mktemp("cn") / "conceptnet-assertions-5.7.0.csv.gz")


@pytest.fixture(scope="module")
def graph(fixture: dict) -> KnowledgeGraph:
    return build_conceptnet_graph(fixture["path"], FIXTURE_CLASSES, topk=(5, 3), progress=False)


def _edges(g: KnowledgeGraph) -> dict[tuple[str, str, str], float]:
    return {(g.wnids[s], g.relations[r], g.wnids[d]): w for (s, d, r), w in zip(g.edges, g.edge_weight.tolist())}


def test_fixture_is_in_the_official_format(fixture: dict) -> None:
    with gzip.open(fixture["path"], "rt", encoding="utf-8", errors="replace") as fh:
        lines = fh.read().split("\n")[:-1]
    assert len(lines) == fixture["lines"] and 150 < len(lines) < 500
    line = next(x for x in lines if x.startswith("/a/[/r/IsA/,/c/en/okapi/n/wn/animal/,"))
    uri, rel, start, end, info = line.split("\t")
    assert uri == f"/a/[{rel}/,{start}/,{end}/]" and rel == "/r/IsA" and end == "/c/en/giraffid/n/wn/animal"
    assert json.loads(info) == {"dataset": "/d/wordnet/3.1", "license": "cc:by/4.0",
                                "sources": [{"contributor": "/s/resource/wordnet/rdf/3.1"}], "weight": 2.0}
    assert write_fixture(Path(fixture["path"]).with_name("again.csv.gz"))["lines"] == fixture["lines"]
    assert Path(fixture["path"]).with_name("again.csv.gz").read_bytes() == Path(fixture["path"]).read_bytes()


def test_reader_keeps_english_and_counts_every_line(fixture: dict) -> None:
    stats = ReadStats()
    items = list(iter_assertions(fixture["path"], stats, progress=False))
    assert len(items) == stats.kept == fixture["english"]
    assert stats.non_english == fixture["non_english"]
    assert stats.lines == fixture["lines"] == stats.kept + stats.non_english + stats.skipped_malformed
    assert dict(stats.malformed) == fixture["malformed_by_reason"] and stats.skipped_malformed == 10
    assert all(a.start.startswith("/c/en/") and a.end.startswith("/c/en/") for a in items)
    assert not any("/c/enm/" in a.start + a.end or a.relation == "ExternalURL" for a in items)
    assert {a.relation for a in items} >= {"IsA", "Synonym", "RelatedTo", "dbpedia/genus", "NotDesires"}
    assert stats.as_dict()["malformed_by_reason"]["weight_invalid"] == 2


def test_reader_survives_garbage_and_plain_text(tmp_path: Path) -> None:
    good = "/a/[/r/IsA/,/c/en/okapi/,/c/en/mammal/]\t/r/IsA\t/c/en/okapi\t/c/en/mammal\t{\"weight\": 1.5}\n"
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"\x00\xff\xfe garbage\n" + good.encode() + b"a\tb\tc\td\te\n" + b"\t" * 10 + b"\n")
    stats = ReadStats()
    items = list(iter_assertions(plain, stats, progress=False))
    assert [(a.relation, a.start, a.end, a.weight) for a in items] == [("IsA", "/c/en/okapi", "/c/en/mammal", 1.5)]
    assert stats.malformed["fields"] == 2 and stats.non_english == 1
    with pytest.raises(FileNotFoundError, match="conceptnet-assertions"):
        next(iter_assertions(tmp_path / "missing.csv.gz"))


def test_reader_streams_lazily(tmp_path: Path) -> None:
    info = write_fixture(tmp_path / "big.csv.gz", extra_lines=30_000)
    stats = ReadStats()
    gen = iter_assertions(info["path"], stats, progress=False)
    assert inspect.isgenerator(gen) and stats.lines == 0  # nothing read before the first item is asked for
    first = next(gen)
    assert first.start.startswith("/c/en/") and stats.lines < 200 < info["lines"]
    gen.close()  # stopping early closes the file and finalises the counters
    assert 0 < stats.bytes_read < Path(info["path"]).stat().st_size


def test_an_untagged_word_joins_a_class_only_where_the_class_is_its_usual_sense() -> None:
    wind = ConceptClass("n04586932", "wind_instrument.n.01", ("wind_instrument", "wind"), usual=("wind_instrument",))
    m = ConceptMapper([*FIXTURE_CLASSES, wind])
    assert m.node("/c/en/wind") == "/c/en/wind" and m.node("/c/en/wind/n") == "/c/en/wind"  # the air, a node of its own
    assert m.node("/c/en/wind_instrument") == wind.id
    assert m.node("/c/en/scooter") == "/c/en/scooter"  # first the foot-propelled one, not the class motor_scooter
    assert m.node("/c/en/scooter/n/wn/artifact") == SCOOTER  # a sense tag still names the class


def test_a_file_without_english_assertions_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    numberbatch = tmp_path / "numberbatch.txt"
    numberbatch.write_text("2 3\n/c/en/dog 0.1 0.2 0.3\n/c/en/cat 0.2 0.1 0.0\n")
    for path, lines in ((empty, "0 lines"), (numberbatch, "3 lines")):
        with pytest.raises(InputError, match=f"holds no English ConceptNet assertion \\({lines}: .*give the ConceptNet 5.7 "
                                             "assertions dump"):
            build_conceptnet_graph(path, FIXTURE_CLASSES, progress=False)


def test_concept_terms() -> None:
    assert concept_terms("Canis_familiaris") == ["canis_familiaris"]
    assert concept_terms("odd-toed_ungulate") == ["odd_toed_ungulate", "odd-toed_ungulate"]
    assert concept_terms("St._Bernard")[0] == "st_bernard"


def test_mapper_uses_wordnet_sense_tags() -> None:
    crane_bird = ConceptClass("n02012849", "crane.n.05", ("crane",), domains=("animal",))
    crane_machine = ConceptClass("n03126707", "crane.n.04", ("crane",), domains=("artifact",))
    m = ConceptMapper([*FIXTURE_CLASSES, crane_bird, crane_machine])
    assert m.node("/c/en/okapi/n/wn/animal") == m.node("/c/en/okapi") == m.node("/c/en/okapi/n") == OKAPI
    assert m.node("/c/en/okapia_johnstoni/n/wn/animal") == OKAPI
    assert m.node("/c/en/dog/n/wikt/en_1") == DOG
    assert m.node("/c/en/dog/n/wn/person") == "/c/en/dog/n/wn/person"  # another synset: not the class
    assert m.node("/c/en/dog/v/wn/motion") == "/c/en/dog/v/wn/motion" and m.node("/c/en/dog/v") == "/c/en/dog/v"
    assert m.node("/c/en/giraffid/n/wn/animal") == m.node("/c/en/giraffid") == "/c/en/giraffid"
    assert m.node("/c/en/scooter/n/wn/artifact") == SCOOTER and m.node("/c/en/scooter/n/wn/animal") != SCOOTER
    assert m.node("/c/en/crane/n/wn/animal") == crane_bird.id
    assert m.node("/c/en/crane/n/wn/artifact") == crane_machine.id
    assert m.node("/c/en/crane") == "/c/en/crane" and m.ambiguous == {"crane"}
    assert m.matched[OKAPI] == {"/c/en/okapi/n/wn/animal", "/c/en/okapi", "/c/en/okapi/n",
                                "/c/en/okapia_johnstoni/n/wn/animal"}


def test_conceptnet_graph_on_fixture(graph: KnowledgeGraph) -> None:
    assert graph.wnids[:6] == [c.id for c in FIXTURE_CLASSES]
    assert graph.names[:6] == [c.name for c in FIXTURE_CLASSES] and graph.lemmas[3] == ["dog", "domestic_dog",
                                                                                         "Canis_familiaris"]
    assert all(w.startswith("/c/en/") for w in graph.wnids[6:])
    assert graph.relations == sorted(graph.relations) and "IsA" in graph.relations
    edges = _edges(graph)
    assert len(edges) == len(graph.edges)  # each (start, relation, end) once
    assert edges[(GIRAFFE, "AtLocation", "/c/en/africa")] == pytest.approx(3.0)  # 2.0 + 1.0, two datasets
    assert edges[(DOG, "CapableOf", "/c/en/bark")] == pytest.approx(4.0)
    assert (DOG, "Antonym", CAT) in edges
    okapi = graph.index[OKAPI]
    assert graph.index["/c/en/giraffid"] in graph.parents[okapi]  # IsA is hierarchical, start = child
    m = graph.manifest
    assert m["source"] == "conceptnet" and m["counts"]["classes_matched"] == 6 and m["unmatched_classes"] == []
    assert m["counts"]["self_loops"] == 5  # Synonym lines between two names of one class
    assert m["conceptnet"]["malformed"] == 10 and m["conceptnet"]["lines"] == 192
    assert "/c/en/dog/n/wn/animal" in m["class_concepts"][DOG]


def test_topk_keeps_the_strongest_neighbours(graph: KnowledgeGraph, fixture: dict) -> None:
    neighbours = {graph.wnids[d] for s, d, _ in graph.edges if s == graph.index[CAT]}
    neighbours |= {graph.wnids[s] for s, d, _ in graph.edges if d == graph.index[CAT]}
    assert not neighbours & {f"/c/en/{w}" for w in CAT_FILLERS}  # 25 weak leaves, all dropped
    assert {"/c/en/pet", "/c/en/purr", "/c/en/whisker"} <= neighbours
    full = build_conceptnet_graph(fixture["path"], FIXTURE_CLASSES, progress=False)  # k = 100: all 33 kept
    cat = full.index[CAT]
    assert len({s + d - cat for s, d, _ in full.edges if cat in (s, d)}) == 33
    again = build_conceptnet_graph(fixture["path"], FIXTURE_CLASSES, topk=(5, 3), progress=False)
    assert again.wnids == graph.wnids and again.edges == graph.edges  # seeded walks: deterministic


def test_rank_neighbours_prefers_structure_and_weight() -> None:
    # node 0 links to a clique {1, 2, 3} and to leaves {4, 5, 6}, all weight 1; node 7 has 2 neighbours
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (0, 4), (0, 5), (0, 6), (7, 8), (7, 9)]
    src, dst = torch.tensor(pairs).T
    rowptr, col, w = _csr(src, dst, torch.ones(len(pairs)), 10)
    gen = torch.Generator().manual_seed(0)
    kept = rank_neighbours(rowptr, col, w, torch.tensor([0, 7]), 3, num_walks=500, generator=gen)
    assert sorted(kept[1, kept[0] == 0].tolist()) == [1, 2, 3]  # hit again and again through the clique
    assert sorted(kept[1, kept[0] == 7].tolist()) == [8, 9]
    heavy = torch.tensor([1.0, 1, 1, 1, 1, 1, 5, 5, 5, 1, 1])  # now the leaves carry the weight
    rowptr, col, w = _csr(src, dst, heavy, 10)
    kept = rank_neighbours(rowptr, col, w, torch.tensor([0]), 3, num_walks=500, generator=gen)
    assert sorted(kept[1].tolist()) == [4, 5, 6]


def test_save_load_round_trip(graph: KnowledgeGraph, tmp_path: Path) -> None:
    back = KnowledgeGraph.load(graph.save(tmp_path / "cn"))
    assert back.wnids == graph.wnids and back.names == graph.names and back.lemmas == graph.lemmas
    assert back.edges == graph.edges and back.relations == graph.relations
    assert back.weights == pytest.approx(graph.weights)
    assert torch.equal(back.ancestor_index()[0], graph.ancestor_index()[0])
    assert back.manifest["conceptnet"]["malformed_by_reason"] == graph.manifest["conceptnet"]["malformed_by_reason"]


def test_merge_graphs_joins_shared_nodes(graph: KnowledgeGraph) -> None:
    toy = toy_graph()
    cn = KnowledgeGraph(wnids=["x3", "/c/en/bark", "x4"], names=["dog", "bark", "cat"],
                        lemmas=[["dog"], ["bark"], ["cat"]], glosses=["", "", ""], edges=[(0, 1, 0), (0, 2, 1)],
                        relations=["CapableOf", "Antonym"], weights=[4.0, 0.5])
    merged = merge_graphs(toy, cn)
    assert merged.wnids == toy.wnids + ["/c/en/bark"] and merged.names[3] == "dog.n.01"
    assert merged.relations == ["hypernym", "instance_hypernym", "CapableOf", "Antonym"]
    assert merged.edges[:5] == toy.edges and merged.edges[5:] == [(3, 6, 2), (3, 4, 3)]
    assert merged.edge_weight.tolist() == [1.0] * 5 + [4.0, 0.5]
    assert merged.manifest["counts"]["shared_nodes"] == 2 and merged.parents[3] == [1]


@requires_wordnet
def test_fixture_classes_match_wordnet() -> None:
    assert classes_from_wordnet([c.id for c in FIXTURE_CLASSES]) == list(FIXTURE_CLASSES)


@requires_wordnet
def test_wordnet_plus_conceptnet(fixture: dict, tmp_path: Path) -> None:
    wnids = [c.id for c in FIXTURE_CLASSES]
    merged = build_source_graph("wordnet+conceptnet", wnids, fixture["path"], progress=False)
    assert merged.wnids[:6] == wnids and len(set(merged.wnids)) == merged.num_nodes
    assert {"hypernym", "IsA", "AtLocation"} <= set(merged.relations)
    mammal = merged.index["n01861778"]  # /c/en/mammal joined WordNet's mammal.n.01 (an anchor)
    assert "/c/en/mammal" not in merged.index and merged.names[mammal] == "mammal.n.01"
    edges = _edges(merged)
    assert (ZEBRA, "IsA", "n01861778") in edges and (ZEBRA, "hypernym", "n02374149") in edges
    assert merged.manifest["counts"]["wordnet_nodes"] < merged.num_nodes
    back = KnowledgeGraph.load(merged.save(tmp_path / "merged"))
    assert back.relations == merged.relations and back.edges == merged.edges


@requires_wordnet
def test_cli_build_graph_conceptnet(fixture: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kgzsl.cli import main

    wnids = tmp_path / "classes.txt"
    wnids.write_text("\n".join(c.id for c in FIXTURE_CLASSES) + "\n")
    rc = main(["-q", "build-graph", "--wnids", str(wnids), "--source", "conceptnet", "--conceptnet",
               fixture["path"], "--conceptnet-topk", "5,3", "--out", str(tmp_path / "g")])
    out = capsys.readouterr().out
    assert rc == 0 and "10 malformed lines skipped" in out and "6 of 6 classes matched" in out
    graph = KnowledgeGraph.load(tmp_path / "g")
    assert f"{graph.num_nodes} nodes, {len(graph.edges)} edges, {len(graph.relations)} relations" in out
    assert graph.manifest["build"]["topk"] == [5, 3]
    assert main(["-q", "build-graph", "--wnids", str(wnids), "--source", "conceptnet"]) == 1
    assert "needs --conceptnet PATH" in capsys.readouterr().err
    assert main(["-q", "build-graph", "--wnids", str(wnids), "--source", "conceptnet", "--conceptnet",
                 fixture["path"], "--conceptnet-topk", "5"]) == 1
    assert "two positive integers" in capsys.readouterr().err


def test_a_folder_given_as_the_conceptnet_file_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder; give the assertions file in it") as info:
        build_source_graph("conceptnet", ["n02084071"], tmp_path, progress=False)
    assert info.value.cli_text().startswith(f"--conceptnet {tmp_path} is a folder")
