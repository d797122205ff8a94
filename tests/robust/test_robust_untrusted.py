"""Untrusted files: no loader of kgzsl ever runs code from a pickle, and every artifact write is atomic.

A malicious checkpoint is a pickle whose ``__reduce__`` runs code when it is unpickled. Each test
plants one where kgzsl reads tensors from user files, checks that kgzsl raises (or, for caches,
recomputes), and that the payload never ran: its marker file must not exist afterwards.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from kgzsl.utils.io import TensorFileError, load_tensors, read_tensor_metadata

from robust_helpers import FakeBackbone, fake_run, torch_threads

PACKAGE = Path(__file__).resolve().parents[2] / "kgzsl"


class Payload:
    """Unpickling this object runs ``exec``, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture
def evil(tmp_path):
    """``(files, marker)``: malicious checkpoints in the formats a user might hand over."""
    marker = tmp_path / "PWNED"
    files = {}
    files["torch_zip"] = tmp_path / "evil.pth"
    torch.save({"state_dict": {"weight": torch.zeros(2)}, "extra": Payload(marker)}, files["torch_zip"])
    files["legacy_pickle"] = tmp_path / "evil_legacy.pt"
    files["legacy_pickle"].write_bytes(pickle.dumps({"state_dict": Payload(marker)}, protocol=2))
    files["pickle_as_safetensors"] = tmp_path / "evil.safetensors"
    files["pickle_as_safetensors"].write_bytes(files["torch_zip"].read_bytes())
    return files, marker


def test_the_payload_is_live(tmp_path):
    """Control: plain unpickling does run the payload, so the other tests' markers are meaningful."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch_zip", "legacy_pickle", "pickle_as_safetensors"])
def test_backbone_weights_loader_refuses_pickled_code(evil, kind):
    from kgzsl.vision.backbones import _read_state_dict

    files, marker = evil
    with pytest.raises(ValueError, match=re.escape(str(files[kind]))):
        _read_state_dict(files[kind])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["resnet18", "efficientnet-lite0"])
def test_load_backbone_with_malicious_local_weights(evil, name):
    from kgzsl.vision.backbones import load_backbone

    files, marker = evil
    with torch_threads(1):
        for path in files.values():
            with pytest.raises(ValueError, match="cannot be loaded safely|not a readable safetensors"):
                load_backbone(name, weights=str(path), device="cpu")
    assert not marker.exists()


def test_tensor_files_refuse_pickles(evil):
    files, marker = evil
    for path in files.values():
        with pytest.raises(TensorFileError, match="never unpickles"):
            load_tensors(path)
        with pytest.raises(TensorFileError):
            read_tensor_metadata(path)
    assert not marker.exists()


def test_run_folder_with_a_pickled_rows_file(evil, tmp_path):
    from kgzsl.inference.classifier import ZeroShotClassifier

    files, marker = evil
    run = fake_run(tmp_path / "run")
    (run / "rows.safetensors").write_bytes(files["torch_zip"].read_bytes())
    with pytest.raises(TensorFileError, match="rows.safetensors"):
        ZeroShotClassifier.load(run, backbone=FakeBackbone())
    assert not marker.exists()


def test_training_checkpoint_that_is_a_pickle(evil, tmp_path):
    from robust_helpers import toy_fit

    files, marker = evil
    ckpt = tmp_path / "checkpoint.safetensors"
    ckpt.write_bytes(files["legacy_pickle"].read_bytes())
    from kgzsl.training.checkpoint import CheckpointError

    with torch_threads(1), pytest.raises(CheckpointError, match="checkpoint.safetensors is not a readable"):
        toy_fit(epochs=5, checkpoint_path=ckpt, resume=True)
    assert not marker.exists()


def test_image_feature_cache_that_is_a_pickle_is_recomputed(evil, tmp_path, caplog):
    from kgzsl.vision.extract import extract_features
    from PIL import Image

    files, marker = evil
    images = []
    for i in range(3):
        images.append(tmp_path / f"im{i}.png")
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(images[-1])
    cache = tmp_path / "cache"
    first, ok = extract_features(FakeBackbone(), images, cache_dir=cache, progress=False)
    (cache_file,) = cache.glob("*.safetensors")
    cache_file.write_bytes(files["torch_zip"].read_bytes())
    again, ok2 = extract_features(FakeBackbone(), images, cache_dir=cache, progress=False)
    assert torch.equal(first, again) and ok.all() and ok2.all()
    assert "unreadable feature cache" in caplog.text
    assert not marker.exists()


def test_node_feature_cache_that_is_a_pickle_is_recomputed(evil, tmp_path, toy, caplog):
    from kgzsl.text.features import TextEncoder, node_features

    class Letters(TextEncoder):
        name, dim = "letters", 4

        def encode(self, texts):
            return torch.tensor([[len(t), t.count("a"), t.count("o"), 1.0] for t in texts])

    files, marker = evil
    toy.save(tmp_path / "g")
    first = node_features(toy, Letters())
    (cache_file,) = (tmp_path / "g" / "features").glob("*.safetensors")
    cache_file.write_bytes(files["torch_zip"].read_bytes())
    assert torch.equal(node_features(toy, Letters()), first)
    assert "unreadable feature cache" in caplog.text
    assert not marker.exists()


def test_config_yaml_cannot_construct_python_objects(tmp_path):
    from kgzsl.training.config import ConfigError, load_config

    marker = tmp_path / "PWNED"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"name: !!python/object/apply:builtins.exec [\"open({str(marker)!r}, 'w').close()\"]\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError):
        load_config(None, [f"name=!!python/object/apply:builtins.exec [\"open({str(marker)!r}, 'w').close()\"]"])
    assert not marker.exists()


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))]


def test_no_unsafe_deserialisation_in_the_package():
    """Static audit: only safetensors, JSON, yaml.safe_load and torch.load(weights_only=True)."""
    problems = []
    for path, text in _sources():
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                problems.append(f"{path.name}: {m.group(0)}")
        for pattern in (r"^\s*import (c?pickle|dill|joblib|shelve|marshal)\b", r"^\s*from (c?pickle|dill|joblib) ",
                        r"pickle\.loads?\(", r"yaml\.(unsafe_)?load\(", r"yaml\.full_load", r"allow_pickle\s*=\s*True",
                        r"(?<![.\w])eval\(", r"torch\.jit\.load\("):
            problems += [f"{path.name}: {m.group(0).strip()}" for m in re.finditer(pattern, text, re.M)]
    assert not problems, problems


def test_every_artifact_write_goes_through_kgzsl_io():
    """Static audit: files are only written inside kgzsl/utils/io.py, or into an ``atomic_path`` temporary."""
    writes = re.compile(r"open\((?!tmp\b)[^)]*['\"][wax]b?\+?['\"]|\.write_(text|bytes)\(|torch\.save\(|np\.save|"
                        r"save_file\(|savefig\((?!tmp)|copyfile\([^,]*,(?!\s*tmp)|\.to_csv\(|json\.dump\(")
    problems = []
    for path, text in _sources():
        if path == PACKAGE / "utils" / "io.py":
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if writes.search(line) and not line.lstrip().startswith("#"):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {line.strip()}")
    assert not problems, "write these through kgzsl.utils.io (atomic_path / write_text / save_tensors):\n" + \
        "\n".join(problems)


def test_an_unreadable_image_is_named_again_when_its_features_come_from_the_cache(tmp_path, caplog):
    from kgzsl.vision.extract import extract_features
    from PIL import Image

    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (16, 16), (40, 90, 200)).save(good)
    bad.write_bytes(b"not an image")
    cache = tmp_path / "cache"
    _, ok = extract_features(FakeBackbone(), [good, bad], cache_dir=cache, progress=False)
    assert ok.tolist() == [True, False] and str(bad) in caplog.text
    caplog.clear()
    _, again = extract_features(FakeBackbone(), [good, bad], cache_dir=cache, progress=False)
    assert again.tolist() == [True, False] and len(list(cache.glob("*.safetensors"))) == 1
    assert f"skipping image: {bad} could not be read" in caplog.text  # not silently left out
