import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kgzsl.cli import main

from conftest import TINY_WNIDS, requires_wordnet

pytestmark = pytest.mark.slow


def _kgzsl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kgzsl", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_help_lists_subcommands():
    out = _kgzsl("--help")
    assert out.returncode == 0
    for cmd in ["build-graph", "train", "predict", "demo", "serve"]:
        assert cmd in out.stdout


@requires_wordnet
def test_build_graph_command(tmp_path):
    wnids = tmp_path / "mine.txt"
    wnids.write_text("n02084071\nn02123045\n")
    out = _kgzsl("build-graph", "--wnids", f"{wnids}", "--out", str(tmp_path / "g"))
    assert out.returncode == 0, out.stderr
    assert "nodes" in out.stdout and "1 root" in out.stdout
    manifest = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert manifest["sources"][0]["count"] == 2 and manifest["counts"]["nodes"] > 10
    bad = _kgzsl("build-graph", "--wnids", "no-such-list", "--out", str(tmp_path / "h"))
    assert bad.returncode == 1 and "neither a shipped set" in bad.stderr
    # a ConceptNet file without a ConceptNet source was read by nothing: a WordNet graph came out, silently
    cn = _kgzsl("build-graph", "--wnids", f"{wnids}", "--conceptnet", str(tmp_path / "cn.csv.gz"), "--out",
                str(tmp_path / "c"))
    assert cn.returncode == 1 and "--source wordnet+conceptnet" in cn.stderr and not (tmp_path / "c").exists()


@requires_wordnet
def test_train_command_with_overrides_and_holdout(tmp_path, capsys):
    wnids = tmp_path / "tiny.txt"
    wnids.write_text("\n".join(TINY_WNIDS))
    assert main(["-q", "build-graph", "--wnids", str(wnids), "--out", str(tmp_path / "g")]) == 0
    code = main(["-q", "train", f"graph.path={tmp_path / 'g'}", f"graph.wnids={wnids}", "model.name=sgcn",
                 "model.hidden_channels=[64]", "features.encoder=wordllama", "train.epochs=5", "--holdout",
                 "n01440764,n02690373", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0
    assert "best validation cosine" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["holdout"] == ["n01440764", "n02690373"] and summary["train"] + summary["val"] == 22
    code = main(["-q", "train", f"graph.path={tmp_path / 'g'}", f"graph.wnids={wnids}", "model.name=conse",
                 "features.encoder=wordllama", "--holdout", "n01440764,n02690373", "--out", str(tmp_path / "conse")])
    assert code == 0  # nothing to train: validated on the training rows, then it keeps every kept seen row
    assert "has nothing to train: validation cosine" in (said := capsys.readouterr().out)
    assert "then remembers all 22 seen rows" in said
    assert json.loads((tmp_path / "conse" / "run.json").read_text())["remembers"] == 22
    assert main(["-q", "train", "--config", str(tmp_path / "missing.yaml")]) == 1


def test_predict_command_json_and_table(tiny_run, tmp_path):
    import skimage

    cat = str(Path(os.path.dirname(skimage.__file__)) / "data" / "chelsea.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n0000")
    out = _kgzsl("predict", str(tiny_run), cat, str(bad), "--labels", "tabby,tench,airliner", "--top-k", "2",
                 "--json")
    assert out.returncode == 1  # one image failed; the other is still reported
    records = json.loads(out.stdout)
    assert records[0]["image"] == cat and records[0]["predictions"][0]["label"] == "tabby"
    assert set(records[0]["predictions"][0]) >= {"label", "wnid", "score"} and len(records[0]["predictions"]) == 2
    assert records[1]["image"] == str(bad) and "error" in records[1]
    table = _kgzsl("predict", str(tiny_run), cat, "--labels", "tabby,tench")
    assert table.returncode == 0 and "tabby.n.01" in table.stdout and "%" in table.stdout
    folder = tmp_path / "photos"  # a folder stands for the image files in it, recursively, in path order
    (folder / "more").mkdir(parents=True)
    shutil.copy(cat, folder / "more" / "b.png")
    shutil.copy(cat, folder / "a.PNG")
    (folder / "notes.txt").write_text("not an image")
    out = _kgzsl("predict", str(tiny_run), str(folder), "--labels", "tabby,tench", "--json")
    assert out.returncode == 0, out.stderr
    assert [r["image"] for r in json.loads(out.stdout)] == [str(folder / "a.PNG"), str(folder / "more" / "b.png")]
    (tmp_path / "empty").mkdir()  # a folder without images is one failed record; the others are classified
    out = _kgzsl("predict", str(tiny_run), str(tmp_path / "empty"), cat, "--labels", "tabby,tench", "--json")
    records = json.loads(out.stdout)
    assert out.returncode == 1 and "a folder without image files" in records[0]["error"] and records[1]["predictions"]
    out = _kgzsl("predict", str(tiny_run), str(tmp_path / "empty"), "--labels", "tabby,tench", "--json")
    assert out.returncode == 1 and [r["image"] for r in json.loads(out.stdout)] == [str(tmp_path / "empty")]


def test_predict_fits_a_label_list_to_the_calibration_images_unless_told_not_to(tiny_run, tmp_path, capsys):
    import skimage
    from PIL import Image

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    data = Path(os.path.dirname(skimage.__file__)) / "data"
    (tmp_path / "mine").mkdir()
    for i, name in enumerate(["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"] * 3):
        Image.open(data / name).convert("RGB").rotate(7 * i).resize((96, 80)).save(tmp_path / "mine" / f"{i}.png")
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "mine"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "with 12 feature vectors: label lists of 2 candidates are fitted to them" in out
    assert "kgzsl predict --no-adapt" in out and "\"adapt\": false" in out  # how to leave a list unfitted
    cat = str(data / "chelsea.png")
    scores = {}
    for flag in ([], ["--no-adapt"]):
        assert main(["-q", "predict", str(run), cat, "--labels", "tabby,tench", "--json", "--device", "cpu", *flag]) == 0
        scores[bool(flag)] = {p["label"]: p["score"] for p in json.loads(capsys.readouterr().out)[0]["predictions"]}
    assert set(scores[True]) == set(scores[False]) == {"tabby", "tench"}
    assert scores[True] != scores[False]  # the fitted rows and the centred ones score differently


def test_add_concept_is_saved_with_the_run_and_calibrate(tiny_run, tmp_path, capsys):
    from PIL import Image

    from kgzsl.inference.classifier import ZeroShotClassifier

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = len(ZeroShotClassifier.load(run, device="cpu").wnids)
    assert main(["-q", "add-concept", str(run), "Burmese cat", "--device", "cpu"]) == 0
    assert "burmese_cat.n.01" in capsys.readouterr().out and (run / "concepts.yaml").is_file()
    clf = ZeroShotClassifier.load(run, device="cpu")  # the saved concept is re-added on load
    assert len(clf.wnids) == before + 1 and clf.resolver.resolve("Burmese cat").synset == "burmese_cat.n.01"

    import skimage

    photo = Image.open(Path(os.path.dirname(skimage.__file__)) / "data" / "chelsea.png").convert("RGB")
    for wnid in ("n02123045", "n01440764"):
        (tmp_path / "cal" / wnid).mkdir(parents=True)
        for i in range(3):
            photo.rotate(10 * i).resize((96, 64)).save(tmp_path / "cal" / wnid / f"{i}.png")
    assert main(["-q", "calibrate", str(run), "--images", str(tmp_path / "cal"), "--keep", "0.5",
                 "--device", "cpu"]) == 0
    stored = json.loads((run / "abstain.json").read_text())
    out = capsys.readouterr().out
    assert stored["inputs"] == 6 and stored["kept"] >= 0.5 and "keeps" in out
    assert "with 6 feature vectors: label lists of 2 to 1 candidates" not in out  # too few to adapt: said so
    assert "with 6 feature vectors" in out and "too few" in out, out


def test_benchmark_json_is_a_flag_and_json_out_writes_the_file(tmp_path, capsys, monkeypatch):
    import kgzsl.tasks.benchmarks.runner as runner

    result = {"rows": [{"method": "dgp", "top1": 0.5}], "seconds": 1.0}
    calls = []
    monkeypatch.setattr(runner, "_run", lambda name, *args: calls.append(name) or ("a table", result))
    assert main(["-q", "benchmark", "fmnist", "--json", "--json-out", str(tmp_path / "b1.json")]) == 0
    assert json.loads(capsys.readouterr().out) == result == json.loads((tmp_path / "b1.json").read_text())
    assert main(["-q", "benchmark", "speed"]) == 0
    assert capsys.readouterr().out == "a table\n" and calls == ["fmnist", "speed"]
