"""Where `kgzsl index --out` and `kgzsl benchmark --json/--json-out` write: checked before any work,
never over a file that is not theirs, and `-` is stdout. Fast: a fake backbone and fake benchmarks."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from kgzsl.cli import build_parser, main

from robust_helpers import FakeBackbone, fake_run


@pytest.fixture
def run_and_photos(tmp_path, monkeypatch):
    """A fake run, whose backbone loads only through the monkeypatch, and a folder of two photos."""
    import kgzsl.vision.backbones

    loaded = []
    monkeypatch.setattr(kgzsl.vision.backbones, "load_backbone", lambda *a, **k: loaded.append(1) or FakeBackbone())
    fake_run(tmp_path / "run", backbone="fakenet")
    (tmp_path / "photos").mkdir()
    for i in range(2):
        Image.new("RGB", (16, 12), (100 * i, 50, 20)).save(tmp_path / "photos" / f"{i}.png")
    return tmp_path / "run", tmp_path / "photos", loaded


def _index(run, photos, out):
    return main(["-q", "index", str(run), str(photos), "--out", str(out), "--device", "cpu", "--workers", "0"])


def test_index_refuses_to_overwrite_a_photo_before_loading_the_run(run_and_photos, tmp_path, capsys):
    run, photos, loaded = run_and_photos
    victim = tmp_path / "victim.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(victim)
    before = victim.read_bytes()
    assert _index(run, photos, victim) == 1
    assert capsys.readouterr().err == (f"kgzsl index: error: --out {victim} exists and is not a kgzsl image index, "
                                       "so it is not overwritten; choose another path, or delete the file\n")
    assert victim.read_bytes() == before and loaded == []


def test_index_into_a_folder_is_one_line_before_any_work(run_and_photos, tmp_path, capsys):
    run, photos, loaded = run_and_photos
    (tmp_path / "existdir").mkdir()
    assert _index(run, photos, tmp_path / "existdir") == 1
    assert capsys.readouterr().err == (f"kgzsl index: error: --out {tmp_path / 'existdir'} is a folder; give the "
                                       f"path of a file, e.g. {tmp_path / 'existdir' / 'photos.index'}\n")
    assert loaded == []


def test_index_skips_a_broken_link_and_counts_it(run_and_photos, tmp_path, capsys):
    run, photos, _ = run_and_photos
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert _index(run, photos, tmp_path / "p.index") == 0
    assert "p.index: 2 images (2 new, 0 unchanged, 0 removed, 1 unreadable)" in capsys.readouterr().out


@pytest.fixture
def fake_benchmarks(monkeypatch, tmp_path):
    import kgzsl.tasks.benchmarks.runner as runner

    result = {"rows": [{"method": "dgp", "top1": 0.5}], "seconds": 1.0}
    calls = []
    monkeypatch.setattr(runner, "_run", lambda name, *args: calls.append(name) or ("a table", result))
    monkeypatch.chdir(tmp_path)
    return result, calls


@pytest.mark.parametrize("argv", [["--json", "-"], ["--json-out", "-"], ["--json", "--json-out", "-"]])
def test_benchmark_json_dash_is_stdout(fake_benchmarks, tmp_path, capsys, argv):
    result, calls = fake_benchmarks
    assert main(["-q", "benchmark", "speed", *argv]) == 0
    assert json.loads(capsys.readouterr().out) == result and calls == ["speed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no file named "-"


def test_benchmark_json_dash_and_a_file(fake_benchmarks, tmp_path, capsys):
    result, _ = fake_benchmarks
    assert main(["-q", "benchmark", "speed", "--json", "-", "--json-out", "b.json"]) == 0
    assert json.loads(capsys.readouterr().out) == result == json.loads((tmp_path / "b.json").read_text())
    assert main(["-q", "benchmark", "speed", "--json", "a.json", "--json-out", "b.json"]) == 1
    assert capsys.readouterr().err == ("kgzsl benchmark: error: two JSON files, --json 'a.json' and --json-out "
                                       "'b.json'; give one\n")


@pytest.mark.parametrize("option", ["--json", "--json-out"])
def test_benchmark_json_into_a_folder_is_refused_before_the_benchmark(fake_benchmarks, tmp_path, capsys, option):
    _, calls = fake_benchmarks
    (tmp_path / "existdir").mkdir()
    assert main(["-q", "benchmark", "speed", option, "existdir"]) == 1
    assert capsys.readouterr().err == (f"kgzsl benchmark: error: {option} existdir is a folder; give the path of a "
                                       "file, e.g. existdir/result.json\n")
    assert calls == []


def test_benchmark_help_says_dash_is_stdout():
    benchmark = build_parser()._subparsers._group_actions[0].choices["benchmark"]
    helps = {a.dest: a.help for a in benchmark._actions}
    assert "- is stdout" in helps["json"] and "- prints it to stdout" in helps["json_out"]
