"""``kgzsl train`` reports a bad config, override or run folder as one line, before training, and
writes nothing."""

from __future__ import annotations

import pytest

from kgzsl.cli import main


def _train(capsys, *args: str) -> tuple[int, str]:
    code = main(["-q", "train", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.epochs=-1", "train.epochs must be >= 1, got -1"),
    ("model.hidden_channels=[0]", "model.hidden_channels: sizes must be >= 1, got [0]"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1), got 1.5"),
])
def test_a_meaningless_number_is_rejected_before_anything_is_written(tmp_path, capsys, override, message):
    code, err = _train(capsys, "--config", "dgp", f"graph.path={tmp_path / 'no-graph'}", override,
                       "--out", str(tmp_path / "run"))
    assert code == 1 and err == f"kgzsl train: error: command-line override {override}: {message}\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("train.epoch=2", "command-line override train.epoch=2: unknown key(s) epoch in section train; valid keys: epochs,"),
    ("train.epochs=abc", "command-line override train.epochs=abc: train.epochs: expected int, got 'abc'"),
])
def test_an_override_error_names_the_override_not_the_shipped_config(capsys, override, message):
    code, err = _train(capsys, "--config", "dgp", override)
    assert code == 1 and err.startswith(f"kgzsl train: error: {message}") and err.count("\n") == 1
    assert "dgp.yaml" not in err


def test_a_bad_key_in_the_config_file_names_the_file(tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text("train:\n  epoch: 2\n")
    code, err = _train(capsys, "--config", str(tmp_path / "mine.yaml"), "train.lr=0.01")
    assert code == 1 and err.startswith(f"kgzsl train: error: {tmp_path / 'mine.yaml'}, section train: "
                                        "unknown key(s) epoch; valid keys: epochs")


@pytest.mark.parametrize("out", ["file/sub", "file"])
def test_an_unwritable_run_folder_is_one_line_before_training(tmp_path, capsys, out):
    (tmp_path / "file").write_text("not a folder")  # mkdir fails under it even for root
    code, err = _train(capsys, "--config", "dgp", f"graph.path={tmp_path / 'no-graph'}", "--out", str(tmp_path / out))
    assert code == 1 and err.startswith(f"kgzsl train: error: cannot write {tmp_path / out}: ")
    assert err.endswith("; choose a folder you can write to\n") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_missing_config_lists_the_shipped_names_not_a_checkout_folder(capsys):
    code, err = _train(capsys, "--config", "nosuchcfg")
    assert code == 1 and err.startswith("kgzsl train: error: config file not found: nosuchcfg; pass --config NAME")
    assert "dgp, gcnz, sgcn" in err and "--config PATH to a YAML file" in err and "configs/" not in err


def test_overrides_may_follow_the_options_and_device_is_an_option(tmp_path, capsys):
    missing = tmp_path / "no-graph"
    assert main(["-q", "train", "--config", "dgp", "--out", str(tmp_path / "run"), f"graph.path={missing}",
                 "--device", "cpu"]) == 1
    assert f"no graph at {missing}" in capsys.readouterr().err  # the trailing override was taken
    assert main(["-q", "train", "--config", "dgp", "--device", "gpu", f"graph.path={missing}"]) == 1
    assert "unknown device 'gpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # anything else after the options is still a usage error
        main(["-q", "train", "--config", "dgp", "--out", str(tmp_path / "run"), "--bogus"])
    assert stop.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_resuming_a_finished_run_is_refused_before_anything_trains(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")  # finished: run.json written, no checkpoint left
    assert main(["-q", "train", "--config", "dgp", "--out", str(run), "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"the run in {run} is finished: --resume has nothing to continue" in err and err.count("\n") == 1


def test_a_model_given_hyper_parameters_of_another_says_which_and_how_to_drop_them():
    from kgzsl.models import build_model

    with pytest.raises(ValueError, match=r"rgcn: it takes no num_groups \(set by the config\); override "
                                         r"model\.num_groups=null"):
        build_model("rgcn", 8, 9, num_groups=5, num_bases=2)
