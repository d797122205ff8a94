"""One rule for graph names and paths: `build-graph --out` writes where `graph.path` reads; no silent builds."""

from __future__ import annotations

import json
import shlex

import pytest

from kgzsl.cli.main import main
from kgzsl.graph import GraphNotFoundError, KnowledgeGraph, build_command, load_graph, load_or_build_graph

from conftest import requires_wordnet, toy_graph


def test_a_missing_graph_names_the_build_command_and_builds_nothing(elsewhere, tmp_path):
    with pytest.raises(GraphNotFoundError) as info:
        load_graph("g_small", "imagenet1k,mine.txt")
    message = str(info.value)
    assert str(tmp_path / "home" / "graph_data" / "g_small") in message
    assert message.endswith("kgzsl build-graph --wnids imagenet1k,mine.txt --out g_small")
    assert not (tmp_path / "home").exists() and list(elsewhere.iterdir()) == []
    assert build_command("my graphs/g", "a.txt") == "kgzsl build-graph --wnids a.txt --out 'my graphs/g'"
    assert shlex.split(build_command("my graphs/g", "a.txt"))[-1] == "my graphs/g"


def test_load_graph_reads_names_and_paths_by_the_same_rule(elsewhere, tmp_path):
    toy_graph().save(tmp_path / "home" / "graph_data" / "named")
    toy_graph().save(elsewhere / "local")
    assert load_graph("named").path == tmp_path / "home" / "graph_data" / "named"
    assert load_graph("./local").num_nodes == 6 and load_graph("local").path == elsewhere / "local"


@requires_wordnet
def test_build_graph_out_and_graph_path_meet(elsewhere, tmp_path, capsys):
    wnids = tmp_path / "mine.txt"
    wnids.write_text("n02084071\nn02123045\n")
    assert main(["-q", "build-graph", "--wnids", str(wnids), "--out", "g_small"]) == 0
    assert "graph " + str(tmp_path / "home" / "graph_data" / "g_small") in capsys.readouterr().out
    assert load_graph("g_small").wnids[:2] == ["n02084071", "n02123045"]
    assert main(["-q", "build-graph", "--wnids", str(wnids), "--out", "./here"]) == 0
    assert (elsewhere / "here" / "manifest.json").is_file() and load_graph("./here").num_nodes > 10
    # without --out: the default name, in the same graph data folder (never inside the package)
    (elsewhere / "graph_data").mkdir()
    assert main(["-q", "build-graph", "--wnids", str(wnids)]) == 0
    assert (elsewhere / "graph_data" / "custom" / "manifest.json").is_file()
    assert load_graph("custom").num_nodes == load_graph(tmp_path / "home" / "graph_data" / "g_small").num_nodes


@requires_wordnet
def test_load_or_build_graph_builds_where_load_graph_reads(elsewhere, tmp_path, caplog):
    wnids = tmp_path / "mine.txt"
    wnids.write_text("n02084071\n")
    with caplog.at_level("INFO", logger="kgzsl.graph.build"):
        built = load_or_build_graph("auto", str(wnids))
    assert "graph " + str(tmp_path / "home" / "graph_data" / "auto") + " not found: building it" in caplog.text
    assert KnowledgeGraph.load(tmp_path / "home" / "graph_data" / "auto").wnids == built.wnids
    manifest = json.loads((tmp_path / "home" / "graph_data" / "auto" / "manifest.json").read_text())
    assert manifest["sources"][0]["count"] == 1
    assert load_graph("auto").wnids == built.wnids
