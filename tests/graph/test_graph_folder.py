"""Graph folders: the one ``nodes.tsv`` reader (graph and run folders share it), and the whole folder."""

from __future__ import annotations

import pytest
import torch

from kgzsl.graph.graph_folder import GraphFormatError, read_nodes


def test_reads_ids_names_lemmas_and_glosses(tmp_path, toy):
    toy.save(tmp_path / "g")
    assert read_nodes(tmp_path / "g" / "nodes.tsv") == (toy.wnids, toy.names, toy.lemmas, toy.glosses)
    path = tmp_path / "nodes.tsv"
    path.write_bytes("wnid\tname\tlemmas\tgloss\r\nx0\tcaf\u00e9.n.01\t\tno lemmas\u2028here\r\n\n".encode())
    assert read_nodes(path) == (["x0"], ["caf\u00e9.n.01"], [[]], ["no lemmas\u2028here"])


@pytest.mark.parametrize("text, match", [
    ("wnid\tname\tlemmas\tgloss\nx0\tcat.n.01\tcat\n", r"nodes.tsv:2: expected wnid, name, lemmas and gloss separated "
                                                       r"by tabs, got 3 field\(s\); do this"),
    ("h\nx0\ta\ta\ta\nx0\tb\tb\tb\n", r"nodes.tsv lists a node id twice; do this"),
])
def test_bad_files_name_the_file_the_line_and_the_fix(tmp_path, text, match):
    path = tmp_path / "nodes.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GraphFormatError, match=match):
        read_nodes(path, fix="do this")
    path.write_bytes(b"h\nx0\tcaf\xe9\ta\ta\n")
    with pytest.raises(GraphFormatError, match="is not UTF-8 text .*; rebuild the graph with `kgzsl build-graph`"):
        read_nodes(path)


def test_a_folder_round_trips_every_field_and_a_partial_one_is_refused(tmp_path, toy):
    from kgzsl.graph.graph_folder import read_graph_folder, write_graph_folder

    write_graph_folder(toy, tmp_path / "g")
    fields = read_graph_folder(tmp_path / "g")
    assert (fields["wnids"], fields["edges"], fields["relations"]) == (toy.wnids, toy.edges, toy.relations)
    index, dist = toy.ancestor_index()
    assert torch.equal(fields["known_ancestors"][0], index) and torch.equal(fields["known_ancestors"][1], dist)
    assert fields["manifest"]["format_version"] == 1 and fields["weights"] is None
    (tmp_path / "g" / "manifest.json").unlink()  # what a save cut short leaves
    with pytest.raises(GraphFormatError, match="no manifest.json"):
        read_graph_folder(tmp_path / "g")


def test_a_short_edge_line_is_named_once_with_its_fix(tmp_path, toy):
    from kgzsl.graph.graph_folder import read_graph_folder, write_graph_folder

    write_graph_folder(toy, tmp_path / "g")
    edges = tmp_path / "g" / "edges.tsv"
    edges.write_text(edges.read_text().splitlines()[0] + "\nn1\tn2\n")  # truncated mid-line
    with pytest.raises(GraphFormatError) as err:
        read_graph_folder(tmp_path / "g")
    assert "edges.tsv:2: expected" in str(err.value) and not str(err.value).endswith("rebuild it")
