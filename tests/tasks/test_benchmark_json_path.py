"""`run_benchmark(json_path=...)` checks where the JSON goes before it runs the benchmark."""

from __future__ import annotations

import pytest

import kgzsl.tasks.benchmarks.runner as runner
from kgzsl.errors import OutputError


def test_json_path_that_is_a_folder_is_refused_before_the_benchmark_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_run", lambda *a: pytest.fail("the benchmark ran"))
    monkeypatch.setattr(runner, "_photos", lambda *a: pytest.fail("the benchmark ran"))
    (tmp_path / "existdir").mkdir()
    for name in ("speed", "photos"):
        with pytest.raises(OutputError, match=r"existdir: it is a folder; give the path of a file, e\.g\. "
                                              r".*existdir/result\.json"):
            runner.run_benchmark(name, ["dgp"], tmp_path, tmp_path, json_path=tmp_path / "existdir")


def test_json_path_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_run", lambda *a: ("a table", {"seconds": 1.0}))
    assert runner.run_benchmark("speed", [], tmp_path, tmp_path, json_path=tmp_path / "out" / "b.json") == "a table"
    assert (tmp_path / "out" / "b.json").read_text() == '{\n  "seconds": 1.0\n}\n'
