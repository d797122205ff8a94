"""The one checkpoint format of training and fine-tuning: digests, save, load, restore, refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kgzsl.training.checkpoint import (CheckpointError, digest, load_checkpoint, restore_checkpoint,
                                       save_checkpoint)


def _trained(seed: int) -> tuple[nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()  # momentum buffers now exist
    return model, opt


def test_digest_of_parts_is_the_digest_of_their_concatenation():
    a, b = torch.arange(3), torch.ones(2, 2)
    assert digest(a, b) == digest({"a": a, "b": b}) != digest(b, a)
    assert digest(a) != digest(a.float())  # the dtype counts, not only the values
    assert digest(["x", 1]) == digest(["x", 1]) != digest(["x", 2])
    assert len(digest(a)) == 24


@pytest.mark.parametrize("kind", ["training", "fine-tuning"])
def test_a_checkpoint_restores_weights_optimizer_and_best(tmp_path, kind):
    model, opt = _trained(0)
    best = {k: v.clone() * 0 for k, v in model.state_dict().items()}
    path, rng = tmp_path / "ckpt.safetensors", torch.get_rng_state()
    save_checkpoint(path, kind, model, best, opt, {"epoch": 3, "fingerprint": {"lr": 0.1}}, extra={"rng/cpu": rng})

    other, other_opt = _trained(1)
    state, tensors = load_checkpoint(path, kind, {"lr": 0.1})
    restored = restore_checkpoint(path, kind, state, tensors, other, other_opt)
    assert state["epoch"] == 3 and torch.equal(tensors["rng/cpu"], rng)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(restored[k], v) for k, v in best.items())
    momentum = [o.state_dict()["state"][0]["momentum_buffer"] for o in (opt, other_opt)]
    assert torch.equal(*momentum)


def test_a_checkpoint_of_another_setup_or_kind_is_refused(tmp_path):
    model, opt = _trained(0)
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, "training", model, model.state_dict(), opt, {"epoch": 2, "fingerprint": {"lr": 0.1, "n": 5}})
    with pytest.raises(CheckpointError, match=r"another training setup: lr: other optimiser settings "
                                              r"\(checkpoint 0\.1, now 0\.5\); delete .*ckpt.safetensors to train"):
        load_checkpoint(path, "training", {"lr": 0.5, "n": 5}, {"lr": "other optimiser settings"})
    with pytest.raises(CheckpointError, match=r"another training setup: n \(checkpoint 5, now 6\)"):
        load_checkpoint(path, "training", {"lr": 0.1, "n": 6})
    with pytest.raises(CheckpointError, match="is not a kgzsl fine-tuning checkpoint of format 1"):
        load_checkpoint(path, "fine-tuning", {"lr": 0.1, "n": 5})
    state, tensors = load_checkpoint(path, "training", {"lr": 0.1, "n": 5})
    with pytest.raises(CheckpointError, match="cannot be restored"):
        restore_checkpoint(path, "training", state, tensors, nn.Linear(3, 4), opt)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path, "training", {})
