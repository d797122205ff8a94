"""A fit's checkpoint: saved, checked against the setup's fingerprint, restored with its history."""

from __future__ import annotations

import pytest
import torch

from kgzsl.models import build_model
from kgzsl.training.checkpoint import CheckpointError
from kgzsl.training.config import TrainConfig
from kgzsl.training.fit_state import FitResult, fit_fingerprint, restore_fit, save_fit


def _setup(lr: float = 1e-2):
    torch.manual_seed(0)
    model = build_model("sgcn", 6, 4, hidden_channels=[8])
    x, rows, targets = torch.randn(5, 6), torch.tensor([0, 1, 2]), torch.randn(3, 4)
    config = TrainConfig(epochs=10, lr=lr)
    saved = fit_fingerprint(model, x, rows, targets, torch.tensor([3]), torch.randn(1, 4), config)
    return model, torch.optim.Adam(model.parameters(), lr=lr), saved


def test_a_fit_resumes_with_its_weights_history_and_random_state(tmp_path):
    model, optimizer, saved = _setup()
    history = FitResult(train_loss=[0.5, 0.4], val_cosine=[0.1, 0.2], best_epoch=2, epochs_run=2, seconds=1.5)
    best = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    save_fit(tmp_path / "c.safetensors", model, optimizer, best, history, 0.2, 2, saved, torch.device("cpu"))
    torch.rand(10)  # the random state moves on
    other, other_opt, _ = _setup()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(3.0)
    best_state, result, score, epoch = restore_fit(tmp_path / "c.safetensors", saved, other, other_opt,
                                                   torch.device("cpu"))
    assert (epoch, score, result.train_loss, result.best_epoch, result.resumed_from) == (2, 0.2, [0.5, 0.4], 2, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v) and torch.equal(best_state[k], best[k])
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_checkpoint_of_another_setup_is_refused_with_what_differs(tmp_path):
    model, optimizer, saved = _setup()
    save_fit(tmp_path / "c.safetensors", model, optimizer, model.state_dict(), FitResult(), 0.0, 1, saved,
             torch.device("cpu"))
    _, _, changed = _setup(lr=0.5)
    with pytest.raises(CheckpointError, match="optimizer: other optimiser settings"):
        restore_fit(tmp_path / "c.safetensors", changed, model, optimizer, torch.device("cpu"))
