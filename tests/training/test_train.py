import math
import torch
import torch.nn.functional as F
import pytest

from kgzsl.training.config import TrainConfig
from kgzsl.models import build_model
from kgzsl.training.run import select_holdout
from kgzsl.training.fit import fit, regression_loss, split_seen

from conftest import random_tree


def test_regression_losses():
    pred, target = torch.zeros(2, 3), torch.ones(2, 3)
    assert regression_loss(pred, target, "sse").item() == pytest.approx(6 / 4)
    assert regression_loss(pred, target, "mse").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown loss"):
        regression_loss(pred, target, "l1")


def test_cosine_and_ranking_losses():
    target = torch.eye(3)
    assert regression_loss(target * 5, target, "cosine").item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert regression_loss(-target, target, "cosine").item() == pytest.approx(2.0)
    # each row on its own target: every other target is 1 cosine further than the margin needs
    assert regression_loss(target, target, "rank").item() == pytest.approx(0.0)
    swapped = target[[1, 0, 2]]  # rows 0 and 1 point at each other's target
    # pairs (0, 1) and (1, 0): margin - 0 + 1; (0, 2) and (1, 2): margin - 0 + 0; (2, 0) and (2, 1): below 0
    expected = (2 * (0.1 + 1) + 2 * 0.1) / 6
    assert regression_loss(swapped, target, "rank").item() == pytest.approx(expected)
    loss = regression_loss(torch.randn(4, 3, requires_grad=True), torch.randn(4, 3), "rank")
    loss.backward()  # differentiable


def test_split_seen_is_seeded_and_disjoint():
    tr, va = split_seen(torch.arange(100), 0.1, seed=3)
    assert va.numel() == 10 and tr.numel() == 90
    assert not set(tr.tolist()) & set(va.tolist())
    assert torch.equal(va, split_seen(torch.arange(100), 0.1, seed=3)[1])
    assert not torch.equal(va, split_seen(torch.arange(100), 0.1, seed=4)[1])


def test_holdout_fraction_and_list():
    seen = [f"n{i:08d}" for i in range(50)]
    drawn = select_holdout(seen, 0.2, seed=0)
    assert len(drawn) == 10 and drawn == select_holdout(seen, 0.2, seed=0)
    assert select_holdout(seen, ["n00000003"], 0) == ["n00000003"]
    with pytest.raises(ValueError, match="not seen classes"):
        select_holdout(seen, ["n99999999"], 0)
    with pytest.raises(ValueError, match="fraction"):
        select_holdout(seen, 1.5, 0)


@pytest.mark.parametrize("name", ["sgcn", "dgp", "gcnz"])
def test_seen_rows_are_recovered_on_a_toy_graph(name):
    graph = random_tree(60, seed=2)
    torch.manual_seed(0)
    x = F.normalize(torch.randn(60, 16), dim=1)
    seen = torch.arange(40, 60)  # leaves-ish nodes at the end
    targets = F.normalize(torch.randn(20, 8), dim=1)
    hidden = [64] * (5 if name == "gcnz" else 1)
    model = build_model(name, 16, 8, hidden_channels=hidden, dropout=0.0)
    config = TrainConfig(epochs=400, lr=1e-2, weight_decay=0.0, patience=400)
    none = torch.zeros(0, dtype=torch.long)  # no validation rows: the lowest training loss wins
    result = fit(model, x, model.operators(graph), seen, targets, none, targets[:0], config, progress=False)
    with torch.no_grad():
        rows = model.predict_rows(x, model.operators(graph), seen)
    cosine = (rows * targets).sum(1)
    assert cosine.mean() > 0.95, cosine
    assert result.epochs_run >= result.best_epoch >= 1
    assert len(result.train_loss) == result.epochs_run and result.train_loss[-1] < result.train_loss[0]


def test_early_stopping_keeps_best_validation_weights():
    graph = random_tree(30, seed=0)
    torch.manual_seed(0)
    x = F.normalize(torch.randn(30, 8), dim=1)
    model = build_model("sgcn", 8, 4, hidden_channels=[16])
    config = TrainConfig(epochs=200, lr=5e-2, patience=5)
    rows = torch.arange(10, 30)
    y = F.normalize(torch.randn(20, 4), dim=1)
    result = fit(model, x, model.operators(graph), rows[:15], y[:15], rows[15:], y[15:], config, progress=False)
    assert result.epochs_run - result.best_epoch <= 5 or result.epochs_run == 200
    model.eval()
    with torch.no_grad():
        val = (model.predict_rows(x, model.operators(graph), rows[15:]) * y[15:]).sum(1).mean()
    assert val.item() == pytest.approx(result.best_val_cosine, abs=1e-5)


def test_keep_last_returns_the_last_epochs_weights_and_the_reference_config_loads():
    from kgzsl.training.config import load_config
    from kgzsl.utils.paths import resolve_config

    graph = random_tree(30, seed=0)
    torch.manual_seed(0)
    x = F.normalize(torch.randn(30, 8), dim=1)
    rows, y = torch.arange(10, 30), F.normalize(torch.randn(20, 4), dim=1)
    none = torch.zeros(0, dtype=torch.long)
    finals = {}
    for keep in ("best", "last"):
        torch.manual_seed(1)
        model = build_model("dgp", 8, 4, hidden_channels=[16], dropout=0.5)
        config = TrainConfig(epochs=30, lr=5e-2, patience=30, val_fraction=0.0, keep=keep, precompute_first_layer=False)
        result = fit(model, x, model.operators(graph), rows, y, none, y[:0], config, progress=False)
        finals[keep] = (result, [p.detach().clone() for p in model.parameters()])
    last, params = finals["last"]
    assert last.best_epoch == last.epochs_run == 30
    # same seed, same steps: "last" keeps the weights after step 30, "best" those of the lowest loss
    best, best_params = finals["best"]
    if best.best_epoch != 30:
        assert any(not torch.equal(a, b) for a, b in zip(params, best_params))
    with pytest.raises(ValueError, match="train.keep"):
        fit(build_model("sgcn", 8, 4, hidden_channels=[16]), x, model.operators(graph), rows, y, none, y[:0],
            TrainConfig(epochs=1, keep="first"), progress=False)
    ref = load_config(resolve_config("dgp-reference"))
    assert ref.train.keep == "last" and ref.train.val_fraction == 0 and not ref.train.precompute_first_layer
    assert ref.train.epochs == 3000 and ref.model.name == "dgp"


def test_small_graphs_get_a_validation_row_or_a_warning(caplog):
    tr, va = split_seen(torch.arange(6), 0.05, seed=0)  # 0.3 rows would round to none
    assert va.numel() == 1 and tr.numel() == 5
    with caplog.at_level("WARNING"):
        tr, va = split_seen(torch.arange(3), 0.05, seed=0)
    assert va.numel() == 0 and tr.numel() == 3 and "only 3 seen row(s) in the graph: no validation rows" in caplog.text
    assert split_seen(torch.arange(10), 0.0, seed=0)[1].numel() == 0  # asked for none: none
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert split_seen(torch.arange(16), 0.1, seed=0)[1].numel() == 2  # 16 seen fish: 2 rows choose the epoch
    assert "only 2 validation row(s) of 16 seen rows: the epoch they choose is mostly chance" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert split_seen(torch.arange(100), 0.1, seed=0)[1].numel() == 10
    assert caplog.text == ""


def test_without_validation_rows_no_loss_is_reported_as_a_cosine(tmp_path, caplog):
    from kgzsl.training.run import plot_history

    graph = random_tree(12, seed=1)
    x = torch.nn.functional.normalize(torch.randn(12, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    y = torch.nn.functional.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    model = build_model("sgcn", 8, 4, hidden_channels=[16])
    with caplog.at_level("INFO"):
        result = fit(model, x, model.operators(graph), torch.tensor([5, 7, 9]), y, torch.tensor([], dtype=torch.long),
                     y[:0], TrainConfig(epochs=60, lr=1e-2, patience=60), progress=False)
    assert result.val_cosine == [] and math.isnan(result.best_val_cosine) and len(result.train_loss) == 60
    assert result.best_epoch == 1 + min(range(60), key=result.train_loss.__getitem__)
    assert "no validation rows; lowest training loss" in caplog.text and "validation cosine -" not in caplog.text
    plot_history(result, tmp_path / "loss.png", "tiny")
    assert (tmp_path / "loss.png").stat().st_size > 0
