import json

import pytest
import torch

from kgzsl.graph import GraphFormatError, KnowledgeGraph, build_wordnet_graph, resolve_wnids
from kgzsl.graph.build import named_wnid_sets, read_wnid_list

from conftest import requires_wordnet


def test_edges_and_ancestors(toy):
    assert toy.edge_index.tolist() == [[1, 2, 3, 4, 5], [0, 0, 1, 1, 2]]
    index, dist = toy.ancestor_index()
    pairs = {(a, b): d for a, b, d in zip(index[0].tolist(), index[1].tolist(), dist.tolist())}
    assert pairs == {(1, 0): 1, (2, 0): 1, (3, 1): 1, (3, 0): 2, (4, 1): 1, (4, 0): 2, (5, 2): 1, (5, 0): 2}
    assert toy.subgraph_roots() == [0]
    assert repr(toy) == "KnowledgeGraph('in-memory', nodes=6, edges=5)"


def test_dgp_distance_groups_on_six_node_tree(toy):
    groups = toy.ancestor_groups(5)
    assert len(groups) == 5
    as_set = [set(map(tuple, g.T.tolist())) for g in groups]
    assert as_set[0] == {(i, i) for i in range(6)}
    assert as_set[1] == {(1, 0), (2, 0), (3, 1), (4, 1), (5, 2)}
    assert as_set[2] == {(3, 0), (4, 0), (5, 0)}
    assert as_set[3] == set() and as_set[4] == set()
    merged = toy.ancestor_groups(3)  # distances >= 2 merge into the last group
    assert set(map(tuple, merged[2].T.tolist())) == as_set[2]


def test_shortest_distance_with_two_parents():
    g = KnowledgeGraph(wnids=list("abcd"), names=list("abcd"), lemmas=[[c] for c in "abcd"], glosses=[""] * 4,
                       edges=[(1, 0, 0), (2, 1, 0), (3, 2, 0), (3, 0, 0)])
    index, dist = g.ancestor_index()
    pairs = {(a, b): d for a, b, d in zip(index[0].tolist(), index[1].tolist(), dist.tolist())}
    assert pairs[(3, 0)] == 1  # direct link wins over the 3-hop path


def test_save_load_roundtrip(toy, tmp_path):
    toy.manifest = {"source": "test"}
    toy.save(tmp_path / "g")
    back = KnowledgeGraph.load(tmp_path / "g")
    assert back.wnids == toy.wnids and back.lemmas == toy.lemmas and back.edges == toy.edges
    for a, b in zip(back.ancestor_index(), toy.ancestor_index()):
        assert torch.equal(a, b)
    assert back.path == tmp_path / "g"


def test_load_rejects_other_format_and_missing_files(toy, tmp_path):
    with pytest.raises(GraphFormatError, match="no manifest.json"):
        KnowledgeGraph.load(tmp_path)
    toy.save(tmp_path / "g")
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    manifest["format_version"] = 999
    (tmp_path / "g" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GraphFormatError, match="rebuild"):
        KnowledgeGraph.load(tmp_path / "g")


def test_invalid_graph_rejected():
    with pytest.raises(GraphFormatError, match="unique"):
        KnowledgeGraph(wnids=["a", "a"], names=["a", "b"], lemmas=[[], []], glosses=["", ""], edges=[])
    with pytest.raises(GraphFormatError, match="outside"):
        KnowledgeGraph(wnids=["a"], names=["a"], lemmas=[[]], glosses=[""], edges=[(0, 3, 0)])


def test_named_sets_shipped():
    sets = named_wnid_sets()
    for name, count in {"imagenet1k": 1000, "imagenet21k": 21843, "2-hops": 1549, "3-hops": 7860,
                        "all": 20842}.items():
        assert len(read_wnid_list(sets[name])) == count


def test_resolve_wnids_merges_and_dedups(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("# my classes\nn02084071 dog\nn01440764\n")
    wnids, sources = resolve_wnids(f"imagenet1k,{f}")
    assert len(wnids) == 1001 and wnids[-1] == "n02084071"
    assert [s["count"] for s in sources] == [1000, 2]
    with pytest.raises(ValueError, match="neither a shipped set"):
        resolve_wnids("no-such-set")


@requires_wordnet
def test_real_wordnet_graph_is_connected_to_entity(tmp_path):
    # dog, tabby, and n09450163, a synset reached through an instance-hypernym edge
    graph = build_wordnet_graph(["n02084071", "n02123045", "n09450163"])
    assert graph.wnids[:3] == ["n02084071", "n02123045", "n09450163"]
    assert graph.names[graph.subgraph_roots()[0]] == "entity.n.01" and len(graph.subgraph_roots()) == 1
    assert graph.manifest["counts"]["instance_edges"] >= 1
    assert graph.manifest["wordnet_version"] == "3.0"
    dog = graph.index["n02084071"]
    assert "dog" in graph.lemmas[dog] and "Canis" in graph.glosses[dog]
    import networkx as nx

    assert nx.is_weakly_connected(nx.DiGraph(graph.edge_index.T.tolist()))
    graph.save(tmp_path / "g")
    assert KnowledgeGraph.load(tmp_path / "g").num_nodes == graph.num_nodes


@requires_wordnet
def test_bad_wnids_are_listed():
    with pytest.raises(ValueError, match="2 of 3 wnids") as info:
        build_wordnet_graph(["n02084071", "n99999999", "dog"])
    assert "n99999999" in str(info.value) and "'dog'" in str(info.value)


@requires_wordnet
@pytest.mark.slow
def test_default_imagenet_graph_is_one_component():
    wnids, sources = resolve_wnids("imagenet1k,imagenet21k")
    graph = build_wordnet_graph(wnids, sources)
    counts = graph.manifest["counts"]
    assert counts["requested"] == 21844 and counts["nodes"] == 23548 and counts["roots"] == 1
    assert counts["instance_edges"] == 4
    seen_from_root = set()
    children = {}
    for c, p, _ in graph.edges:
        children.setdefault(p, []).append(c)
    stack = graph.subgraph_roots()
    while stack:
        node = stack.pop()
        if node not in seen_from_root:
            seen_from_root.add(node)
            stack.extend(children.get(node, []))
    assert len(seen_from_root) == graph.num_nodes  # every test class hangs under entity.n.01


@requires_wordnet
def test_node_order_does_not_depend_on_hash_seed():
    import os
    import subprocess
    import sys

    code = ("from kgzsl.graph import build_wordnet_graph; "
            "g = build_wordnet_graph(['n02084071', 'n02123045', 'n04037443', 'n03790512']); "
            "print(' '.join(g.wnids)); print(g.edges)")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(outs) == 1


def test_a_wnid_list_that_is_no_wnid_list_is_refused_with_its_lines(tmp_path):
    taxonomy = tmp_path / "shop.yaml"
    taxonomy.write_text("- name: air fryer\n  parents: [kitchen appliance]\n")
    with pytest.raises(ValueError, match=r"is not a wnid list \(line 1: '-'; line 2: 'parents:'\)"):
        read_wnid_list(taxonomy)
    listed = tmp_path / "ok.txt"
    listed.write_bytes(b"\xef\xbb\xbfn02121620  # cat\nn02084071\n")  # saved with a byte-order mark
    assert read_wnid_list(listed) == ["n02121620", "n02084071"]
