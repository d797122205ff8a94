"""The config check rejects meaningless numbers, and names where a bad key or value came from:
the command-line override, or the file."""

from __future__ import annotations

import pytest

from kgzsl.errors import InputError, NotFoundError, OutputError
from kgzsl.training.config import ConfigError, RunConfig, TrainConfig, check_config, load_config
from kgzsl.training.run import train_run


@pytest.mark.parametrize("override, message", [
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.epochs=-1", "train.epochs must be >= 1, got -1"),
    ("train.patience=0", "train.patience must be >= 1, got 0"),
    ("train.lr=0", "train.lr must be > 0, got 0.0"),
    ("train.lr=.nan", "train.lr must be > 0, got nan"),
    ("train.weight_decay=-1e-4", "train.weight_decay must be >= 0, got -0.0001"),
    ("train.val_fraction=1", "train.val_fraction must be in [0, 1), got 1.0"),
    ("train.checkpoint_every=-1", "train.checkpoint_every must be >= 0 (0: no checkpoints), got -1"),
    ("model.hidden_channels=[0]", "model.hidden_channels: sizes must be >= 1, got [0]"),
    ("model.hidden_channels=[64, -2]", "model.hidden_channels: sizes must be >= 1, got [64, -2]"),
    ("model.dropout=1.0", "model.dropout must be in [0, 1), got 1.0"),
    ("model.dropout=-0.1", "model.dropout must be in [0, 1), got -0.1"),
    ("model.num_groups=0", "model.num_groups must be >= 1, got 0"),
    ("model.neighbours=0", "model.neighbours must be >= 1, got 0"),
    ("model.temperature=0", "model.temperature must be > 0, got 0.0"),
])
def test_numbers_out_of_range_are_rejected_by_the_config_check(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == f"override {override!r}: {message}"
    assert info.value.cli_text() == f"command-line override {override}: {message}"


@pytest.mark.parametrize("override", ["train.epochs=1", "train.patience=1", "train.weight_decay=0",
                                      "train.val_fraction=0", "train.checkpoint_every=0", "model.hidden_channels=[]",
                                      "model.dropout=0", "model.temperature=null"])
def test_numbers_at_the_edge_of_their_range_are_accepted(override):
    load_config(None, [override])


def test_a_number_out_of_range_in_a_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: train\.epochs must be >= 1, got 0$"):
        load_config(bad)
    assert load_config(bad, ["train.epochs=2"]).train.epochs == 2  # an override still wins over the file


@pytest.mark.parametrize("override, python, cli", [
    ("train.epoch=2", "override 'train.epoch=2': unknown key(s) epoch in section train; valid keys: epochs, lr",
     "command-line override train.epoch=2: unknown key(s) epoch in section train; valid keys: epochs, lr"),
    ("train.epochs=abc", "override 'train.epochs=abc': train.epochs: expected int, got 'abc'",
     "command-line override train.epochs=abc: train.epochs: expected int, got 'abc'"),
    ("modle.name=dgp", "override 'modle.name=dgp': unknown key(s) modle; valid keys: name, graph",
     "command-line override modle.name=dgp: unknown key(s) modle; valid keys: name, graph"),
    ("train.epochs.x=1", "override 'train.epochs.x=1': train.epochs is not a section",
     "command-line override train.epochs.x=1: train.epochs is not a section"),
])
def test_an_override_error_names_the_override_not_the_shipped_file(override, python, cli):
    with pytest.raises(ConfigError) as info:
        load_config("dgp", [override])
    assert str(info.value).startswith(python) and info.value.cli_text().startswith(cli)
    assert "dgp.yaml" not in str(info.value)


def test_a_bad_key_of_the_file_still_names_the_file_when_overrides_are_given(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=rf"^{bad}, section train: unknown key\(s\) epoch; valid keys"):
        load_config(bad, ["train.epochs=2"])


def test_an_override_into_an_empty_section_of_the_file_works(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n")  # every key commented out: YAML reads null
    assert load_config(tmp_path / "c.yaml", ["train.epochs=2"]).train.epochs == 2
    (tmp_path / "c.yaml").write_text("train: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train is not a section \(got 5\)"):
        load_config(tmp_path / "c.yaml", ["train.epochs=2"])


def test_a_missing_config_tells_the_command_line_the_names_and_no_checkout_folder(tmp_path):
    with pytest.raises(NotFoundError) as info:
        load_config("nosuchcfg")
    cli = info.value.cli_text()
    assert cli.startswith("config file not found: nosuchcfg; pass --config NAME with NAME a shipped config (")
    assert "dgp, gcnz, sgcn" in cli and "--config PATH to a YAML file" in cli and "configs/" not in cli


def test_check_config_checks_a_config_built_in_python():
    check_config(RunConfig())
    with pytest.raises(ConfigError, match=r"^train\.epochs must be >= 1, got 0$"):
        check_config(RunConfig(train=TrainConfig(epochs=0)))


def test_train_run_rejects_a_bad_config_before_writing_anything(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs must be >= 1, got 0"):
        train_run(RunConfig(train=TrainConfig(epochs=0)), out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out", ["file/sub", "file"])
def test_train_run_checks_its_folder_can_be_written_before_loading_anything(tmp_path, out):
    (tmp_path / "file").write_text("not a folder")
    config = RunConfig()
    config.graph.path = str(tmp_path / "no-graph")  # the check comes first: this graph is never looked for
    with pytest.raises(OutputError, match=rf"^cannot write {tmp_path / out}: .+; choose a folder you can write to$"):
        train_run(config, out_dir=tmp_path / out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing left behind


def test_a_misspelt_model_fails_before_any_work(tmp_path, monkeypatch):
    import kgzsl.text.features as features

    monkeypatch.setattr(features, "node_features", lambda *a, **k: pytest.fail("text features computed first"))
    config = load_config(None, ["model.name=dgpp", f"graph.path={tmp_path / 'no-graph'}"])
    with pytest.raises(InputError, match="unknown model 'dgpp'; choose one of"):
        train_run(config, out_dir=tmp_path / "run", progress=False)
    config = load_config(None, ["model.name=dgp+sgnc", f"graph.path={tmp_path / 'no-graph'}"])
    with pytest.raises(InputError, match="unknown model 'sgnc'"):
        train_run(config, out_dir=tmp_path / "run", progress=False)


def test_resume_of_a_folder_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    import kgzsl.text.features as features

    monkeypatch.setattr(features, "node_features", lambda *a, **k: pytest.fail("trained from the start"))
    config = load_config(None, [f"graph.path={tmp_path / 'no-graph'}"])
    with pytest.raises(InputError, match="--resume: .*runZ is no folder, so there is nothing to continue"):
        train_run(config, out_dir=tmp_path / "runZ", progress=False, resume=True)
    assert not (tmp_path / "runZ").exists()


def test_training_into_a_finished_run_says_what_stays(tmp_path, monkeypatch, caplog):
    import kgzsl.training.run as run_module

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    (out / "score_calibration.safetensors").write_bytes(b"")

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(run_module, "resolve_device", stop)  # the warning comes first; no training here
    with pytest.raises(Stop):
        train_run(load_config(None, [f"graph.path={tmp_path / 'g'}"]), out_dir=out, progress=False)
    assert f"{out} holds a finished run: this training replaces it; its score_calibration.safetensors stay" \
        in caplog.text
    assert "fine-tuned backbone" not in caplog.text
    (out / "finetune").mkdir()  # a backbone fine-tuned to the old rows: predict would go on using it
    caplog.clear()
    with pytest.raises(Stop):
        train_run(load_config(None, [f"graph.path={tmp_path / 'g'}"]), out_dir=out, progress=False)
    assert f"its fine-tuned backbone ({out / 'finetune'}) stays too, and predict uses it, though it was tuned to " \
           "the old rows" in caplog.text
