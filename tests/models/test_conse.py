"""ConSE in weight space: a node's row is the similarity-weighted mean of its nearest seen rows in text;
it remembers rather than trains, and a saved one (alone or in an ensemble) rebuilds to the same rows."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from kgzsl.models import ConSE, Ensemble, build_model, rebuild_model
from kgzsl.models.conse import neighbour_rows
from kgzsl.training.config import TrainConfig
from kgzsl.training.fit import fit, keep_every_row


def _memory() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Node features of 6 nodes (4-d) and unit rows (3-d) of nodes 0..3; nodes 4 and 5 are unseen."""
    x = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0.2, -1]])
    rows = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]), dim=1)
    return x, rows, torch.arange(4)


def test_a_row_is_the_similarity_weighted_mean_of_the_nearest_seen_rows():
    x, rows, seen = _memory()
    model = ConSE(4, 3, neighbours=2)
    model.remember(x[seen], rows)
    out = model.predict_rows(x, model.operators(None))
    # node 4 = [1, 1, 0, 0]: nodes 0 and 1 at cosine 0.707 each -> the mean of their rows
    torch.testing.assert_close(out[4], F.normalize(rows[0] + rows[1], dim=0))
    # node 5: node 2 at cosine 0.196, node 3 at -0.98 (weighs nothing) -> row 2
    torch.testing.assert_close(out[5], rows[2], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(model.predict_rows(x, [], rows=torch.tensor([5, 4])), out[[5, 4]])
    by_hand = neighbour_rows(x[[4]], x[seen], rows, top=2)  # the unnormalised mean, as B2's baseline uses it
    torch.testing.assert_close(by_hand[0], (rows[0] + rows[1]) / 2)
    with pytest.raises(ValueError, match="expected"):
        model.remember(x[seen], rows[:3])
    with pytest.raises(RuntimeError, match="remembers"):
        ConSE(4, 3).predict_rows(x, [])


def test_with_a_temperature_the_nearest_rows_weigh_the_most():
    x, rows, seen = _memory()
    q = torch.tensor([[1.0, 0.5, 0, 0]])  # cosine 0.894 to node 0, 0.447 to node 1
    sims = torch.tensor([0.894427, 0.447214])
    for t in (0.5, 0.1):
        w = torch.softmax(sims / t, 0)
        torch.testing.assert_close(neighbour_rows(q, x[seen], rows, top=2, temperature=t)[0],
                                   w[0] * rows[0] + w[1] * rows[1], atol=1e-5, rtol=0)
    nearest = neighbour_rows(q, x[seen], rows, top=2, temperature=0.01)[0]
    torch.testing.assert_close(nearest, rows[0], atol=1e-6, rtol=0)  # all but the nearest vanish
    model = ConSE(4, 3, neighbours=2, temperature=0.1)
    model.remember(x[seen], rows)
    assert model.hparams["temperature"] == 0.1
    old = rebuild_model("conse", {"in_channels": 4, "out_channels": 3, "neighbours": 2})  # saved before it
    assert old.temperature is None
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ConSE(4, 3, temperature=0.0)


def test_fit_makes_it_remember_the_training_rows_only_and_reports_the_validation_cosine():
    x, rows, _ = _memory()
    model = ConSE(4, 3, neighbours=1)
    assert not model.trainable and model.operators(None) == []
    result = fit(model, x, [], torch.tensor([0, 1, 2]), rows[:3], torch.tensor([3]), rows[3:], TrainConfig(epochs=5))
    assert model.keys.size(0) == 3 and result.epochs_run == 0 and result.train_loss == []
    expected = float(F.cosine_similarity(model.predict_rows(x, [], torch.tensor([3])), rows[3:]))
    assert result.val_cosine == [pytest.approx(expected)] and result.best_val_cosine == pytest.approx(expected)


def test_after_validation_it_remembers_every_seen_row_and_a_trained_model_is_left_alone():
    x, rows, _ = _memory()
    model = ConSE(4, 3, neighbours=1)
    fit(model, x, [], torch.tensor([0, 1, 2]), rows[:3], torch.tensor([3]), rows[3:], TrainConfig(epochs=5))
    before = model.predict_rows(x, [], torch.tensor([3]))
    assert keep_every_row(model, x, torch.arange(4), rows)
    assert model.keys.size(0) == 4
    torch.testing.assert_close(model.predict_rows(x, [], torch.tensor([3])), rows[3:])  # its own row now
    assert float(F.cosine_similarity(before, rows[3:])) < 0.99
    trained = build_model("sgcn", 4, 3, hidden_channels=[8])
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    assert not keep_every_row(trained, x, torch.arange(4), rows)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in state.items())


def test_a_saved_conse_member_rebuilds_with_its_memory(toy):
    x, rows, seen = _memory()
    torch.manual_seed(0)
    model = build_model("sgcn+conse", 4, 3, hidden_channels=[8], neighbours=2).eval()
    assert isinstance(model, Ensemble) and isinstance(model.members[1], ConSE)
    model.members[1].remember(x[seen], rows)
    hparams = json.loads(json.dumps(model.hparams))  # as stored in model.safetensors' header
    again = rebuild_model(model.name, hparams).eval()
    again.load_state_dict(model.state_dict())
    assert again.members[1].keys.size(0) == 4
    torch.testing.assert_close(again.predict_rows(x, again.operators(toy)), model.predict_rows(x, model.operators(toy)))
    assert repr(again.members[1]) == "ConSE(4 → 3, neighbours=2, remembered=4)"
