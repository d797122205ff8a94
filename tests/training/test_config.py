from pathlib import Path

import pytest

from kgzsl.training.config import ConfigError, RunConfig, config_to_dict, load_config, save_config
from kgzsl.models import build_model

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.stem for p in CONFIGS} >= {"gcnz", "sgcn", "dgp"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_builds_its_model(path):
    config = load_config(path)
    assert config.name == path.stem
    assert config.backbone.name == "efficientnet-lite0"
    assert config.graph.path == "imagenet1k_21k"
    params = {k: v for k, v in config_to_dict(config.model).items() if k != "name"}
    model = build_model(config.model.name, 384, 1281, **params)
    assert model.name == config.model.name


def test_overrides_and_types(tmp_path):
    config = load_config(None, ["train.lr=1e-2", "model.name=sgcn", "model.hidden_channels=[64, 32]",
                                "train.holdout=0.2", "features.gloss=true"])
    assert config.train.lr == 0.01 and config.model.hidden_channels == [64, 32]
    assert config.train.holdout == 0.2 and config.features.gloss is True
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize("overrides, match", [
    (["train.foo=1"], "unknown key.*valid keys: epochs"),
    (["train.lr=abc"], "expected float"),
    (["model=3"], "expected a mapping"),
    (["train.epochs=1.5"], "expected int"),
    (["nonsense"], "section.key=value"),
])
def test_bad_overrides(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_bad_yaml_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    bad.write_text("modle:\n  name: dgp\n")
    with pytest.raises(ConfigError, match="unknown key.*modle.*valid keys"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_defaults():
    assert RunConfig().model.name == "dgp" and RunConfig().features.encoder == "minilm"


def test_a_config_error_names_the_file_and_the_section_apart(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, section train: unknown key\(s\) lrr; valid keys: epochs"):
        load_config(bad)
    bad.write_text("train:\n  epochs: 1.5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.epochs: expected int"):
        load_config(bad)


def test_paths_set_from_python_are_written_as_text(tmp_path):
    import yaml
    from pathlib import Path

    from kgzsl.training.config import config_to_dict, load_config

    config = load_config(None, [])
    config.backbone.weights = Path("/data/weights/resnet50.safetensors")  # as a Python user sets it
    config.graph.path = tmp_path / "graph"
    plain = config_to_dict(config)
    assert plain["backbone"]["weights"] == "/data/weights/resnet50.safetensors"
    assert plain["graph"]["path"] == str(tmp_path / "graph")
    yaml.safe_dump(plain)  # what run.json and config.yaml are written from: no Path objects left
