"""Reading a run folder for prediction: its files agree, and the backbone fits the rows."""

from __future__ import annotations

import json

import pytest
import torch

from kgzsl.inference.run_folder import RunFormatError, RunNotFoundError, read_run, run_backbone

from robust_helpers import FakeBackbone, fake_run


def test_a_run_folder_reads_as_its_rows_nodes_and_backbone(tmp_path):
    rows = torch.nn.functional.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    run = read_run(fake_run(tmp_path / "run", rows=rows))
    assert run.wnids == ["x0", "x1", "x2"] and run.names == ["cat.n.01", "dog.n.01", "car.n.01"]
    assert run.lemmas == [["cat"], ["dog"], ["car"]] and run.row_scale == 1.0 and run.backbone == "fakenet"
    torch.testing.assert_close(run.rows, rows)
    mine = FakeBackbone()
    assert run_backbone(run, backbone=mine) is mine  # the given one, when it is the run's
    with pytest.raises(RunFormatError, match="trained for backbone 'fakenet', not 'othernet'"):
        run_backbone(run, backbone=FakeBackbone("othernet"))


def test_a_run_that_does_not_say_its_backbone_cannot_load_one(tmp_path):
    folder = fake_run(tmp_path / "run", backbone="")
    (folder / "run.json").write_text(json.dumps({"num_nodes": 3}))
    with pytest.raises(RunFormatError, match="does not say which backbone"):
        run_backbone(read_run(folder))


def test_missing_and_disagreeing_files_are_named(tmp_path):
    with pytest.raises(RunNotFoundError, match="run folder .*nothing not found; check the path"):
        read_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunNotFoundError, match=r"no run.json\); train one with `kgzsl train --config dgp"):
        read_run(tmp_path / "empty")
    folder = fake_run(tmp_path / "run")
    (folder / "run.json").write_text(json.dumps({"backbone": "fakenet", "num_nodes": 4}))
    with pytest.raises(RunFormatError, match="records 4 nodes but .*nodes.tsv lists 3"):
        read_run(folder)


def test_the_requested_classes_are_the_wnid_lists_the_graph_was_built_from(tmp_path):
    from kgzsl.inference.run_folder import requested_wnids

    run = tmp_path / "run"
    run.mkdir()
    assert requested_wnids(run) is None  # no manifest: every node counts
    mine = tmp_path / "mine.txt"
    mine.write_text("n02121620\nn02084071\n")
    (run / "manifest.json").write_text(json.dumps({"sources": [{"name": str(mine), "path": str(mine)}]}))
    assert requested_wnids(run) == frozenset({"n02121620", "n02084071"})
    (run / "manifest.json").write_text(json.dumps({"sources": [{"name": str(tmp_path / "gone")}]}))
    assert requested_wnids(run) is None  # the list cannot be read back: unknown, not an error
    (run / "manifest.json").write_text(json.dumps({"sources": ["imagenet1k"]}))
    assert requested_wnids(run) is None  # malformed


def test_an_interrupted_training_points_at_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.safetensors").write_bytes(b"")  # what an interrupted `kgzsl train` leaves
    with pytest.raises(RunNotFoundError, match=r"training was interrupted .* same `kgzsl train` command and --resume"):
        read_run(tmp_path / "run")
