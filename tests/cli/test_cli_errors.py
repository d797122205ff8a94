"""Which errors the ``kgzsl`` command reports as user errors, and in which words.

Every error class of the package derives from :class:`kgzsl.errors.KgzslError`; the command reports
those as one line with exit code 1, argparse's usage errors keep exit code 2, and anything else (a
bug) keeps its traceback. Messages shown by the command name its options, not Python arguments.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import shutil
from pathlib import Path

import pytest
from PIL import Image

import kgzsl
from kgzsl.cli import main
from kgzsl.errors import InputError, KgzslError, MissingPackageError, NotFoundError, OutputError, SetupError


def _error_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(kgzsl.__path__, "kgzsl."):
        if info.name == "kgzsl.__main__":  # importing it runs the command
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_error_class_of_the_package_is_a_kgzsl_error():
    classes = _error_classes()
    assert len(classes) >= 15  # the kinds of kgzsl.errors and the dozen module errors built on them
    assert [name for name, cls in classes.items() if not issubclass(cls, KgzslError)] == []


@pytest.mark.parametrize("name, builtin", [
    ("kgzsl.inference.labels.LabelError", ValueError),
    ("kgzsl.inference.run_folder.RunNotFoundError", FileNotFoundError),
    ("kgzsl.inference.run_folder.RunFormatError", ValueError),
    ("kgzsl.inference.concept_nodes.AmbiguousConceptError", ValueError),
    ("kgzsl.graph.graph_folder.GraphFormatError", ValueError),
    ("kgzsl.graph.wordnet.WordNetNotFoundError", RuntimeError),
    ("kgzsl.training.config.ConfigError", ValueError),
    ("kgzsl.vision.images.ImageLoadError", ValueError),
    ("kgzsl.utils.io.TensorFileError", ValueError),
])
def test_module_errors_keep_their_builtin_base(name, builtin):
    assert issubclass(_error_classes()[name], builtin)


def test_the_kinds_keep_the_builtin_they_replace_and_the_cli_wording():
    assert issubclass(InputError, ValueError) and issubclass(NotFoundError, FileNotFoundError)
    assert issubclass(OutputError, OSError) and issubclass(SetupError, RuntimeError)
    assert issubclass(MissingPackageError, ImportError) and issubclass(MissingPackageError, SetupError)
    plain, worded = InputError("top_k must be >= 1"), InputError("top_k must be >= 1", cli_message="--top-k ...")
    assert plain.cli_text() == "top_k must be >= 1" and worded.cli_text() == "--top-k ..."
    assert str(worded) == "top_k must be >= 1"  # Python callers see the Python wording


def test_a_user_error_is_one_line_with_exit_code_1(tmp_path, capsys):
    assert main(["-q", "train", "--config", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kgzsl train: error: config file not found:") and err.count("\n") == 1


def test_an_unwritable_output_is_a_kgzsl_error_that_stays_an_oserror(tmp_path):
    from kgzsl.utils.io import write_text

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=f"cannot write {blocker / 'sub' / 'x.txt'}: ") as info:
        write_text(blocker / "sub" / "x.txt", "hello")
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize("bug", [ValueError("a bug"), OSError("a bug"), ZeroDivisionError("a bug")])
def test_any_other_exception_is_a_bug_and_keeps_its_traceback(monkeypatch, bug):
    import kgzsl.tasks.benchmarks.runner as runner

    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr(runner, "run_benchmark", broken)
    with pytest.raises(type(bug), match="a bug"):
        main(["-q", "benchmark", "fmnist"])


@pytest.mark.slow
def test_cli_messages_name_options_and_python_messages_name_arguments(tiny_run, tmp_path, capsys):
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.inference.concept_nodes import AmbiguousConceptError, ConceptError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["-q", "add-concept", str(run), "crane", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "is ambiguous" in err and "--sense" in err and "sense=" not in err and "add_concept(" not in err
    assert main(["-q", "add-concept", str(run), "zorblax", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "--parents" in err and "parents=" not in err
    assert main(["-q", "add-concept", str(run), "crane", "--sense", "bogus", "--device", "cpu"]) == 1
    assert "--sense 'bogus' must be a synset name" in capsys.readouterr().err

    import skimage

    cat = str(Path(os.path.dirname(skimage.__file__)) / "data" / "chelsea.png")
    assert main(["-q", "predict", str(run), cat, "--abstain", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "--abstain needs a calibrated threshold: run `kgzsl calibrate RUN --images DIR`" in err
    assert "abstain=True" not in err and not (run / "concepts.yaml").exists()  # nothing was added

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["-q", "explain", str(run), cat, "--label", "tabby", "--png", str(blocker / "x.png"),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kgzsl explain: error: cannot write {blocker / 'x.png'}") and "Traceback" not in err

    clf = ZeroShotClassifier.load(run, device="cpu")
    with pytest.raises(AmbiguousConceptError, match=r"Pick one with sense=, e\.g\. add_concept\('crane'"):
        clf.add_concept("crane")
    with pytest.raises(ConceptError, match=r"parents=\[\.\.\.\]"):
        clf.add_concept("zorblax")
    with pytest.raises(ValueError, match="abstain=True needs a calibrated threshold"):
        clf.predict(cat, ["tabby", "tench"], abstain=True)


def test_an_option_given_in_part_is_refused_not_taken_for_another(tmp_path, capsys):
    from kgzsl.cli.main import build_parser

    with pytest.raises(SystemExit) as caught:  # `--runs` must not silently mean `--runs-dir`
        build_parser().parse_args(["benchmark", "photos", "--runs", str(tmp_path)])
    assert caught.value.code == 2 and "unrecognized arguments: --runs" in capsys.readouterr().err
    args = build_parser().parse_args(["benchmark", "photos", "--run", "r1", "--data", "d"])
    assert args.run_option == "r1" and args.runs_dir == "runs"  # --run is the run, as the positional RUN
    assert main(["-q", "benchmark", "photos", "r1", "--run", "r2", "--data", str(tmp_path)]) == 1
    assert "the run is given twice, 'r1' and --run 'r2'" in capsys.readouterr().err
    (tmp_path / "data" / "n02121620").mkdir(parents=True)  # a photo, so that the run is what fails
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "n02121620" / "cat.png")
    assert main(["-q", "benchmark", "photos", "--run", str(tmp_path / "none"), "--data", str(tmp_path / "data")]) == 1
    assert "run folder " + str(tmp_path / "none") + " not found" in capsys.readouterr().err  # that run, not runs/demo


def test_benchmark_json_takes_an_optional_path(tmp_path, capsys):
    from kgzsl.cli.main import build_parser

    assert build_parser().parse_args(["benchmark", "photos", "--json"]).json is True  # print JSON
    assert build_parser().parse_args(["benchmark", "photos", "--json", "b5.json"]).json == "b5.json"
    # --json PATH is not taken for the run, and names one file with --json-out
    assert main(["-q", "benchmark", "photos", "--data", str(tmp_path), "--json", "a.json", "--json-out", "b.json"]) == 1
    assert "two JSON files, --json 'a.json' and --json-out 'b.json'" in capsys.readouterr().err


def test_benchmark_refuses_options_its_benchmark_would_ignore(capsys, monkeypatch):
    import kgzsl.tasks.benchmarks.runner as runner

    monkeypatch.setattr(runner, "run_benchmark", lambda *a, **k: pytest.fail("ran with an ignored option"))
    assert main(["-q", "benchmark", "photos", "--data", "d", "--models", "dgp"]) == 1
    assert "benchmark photos does not use --models: --models is for fmnist and imagenet-heldout" in \
        capsys.readouterr().err
    assert main(["-q", "benchmark", "imagenet-heldout", "--limit-per-class", "3", "--ensemble"]) == 1
    assert "does not use --limit-per-class: --limit-per-class is for fmnist" in capsys.readouterr().err
    assert main(["-q", "benchmark", "fmnist", "some-run"]) == 1
    assert "does not use RUN: RUN is for serve and photos" in capsys.readouterr().err
