"""An ensemble is its members side by side: hyper-parameters go to the members that take them, the
rows are the normalised mean of theirs, and a saved ensemble rebuilds to the same rows."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from kgzsl.errors import InputError
from kgzsl.models import DGP, SGCN, Ensemble, build_model, rebuild_model


def test_names_joined_by_plus_build_an_ensemble_and_route_hyper_parameters(toy):
    model = build_model("dgp+sgcn", 4, 3, hidden_channels=[8], num_groups=3, dropout=0.2)
    assert isinstance(model, Ensemble) and model.name == "dgp+sgcn"
    dgp, sgcn = model.members
    assert isinstance(dgp, DGP) and isinstance(sgcn, SGCN)
    assert dgp.hparams["num_groups"] == 3 and "num_groups" not in sgcn.hparams  # DGP's own parameter
    assert dgp.hparams["dropout"] == sgcn.hparams["dropout"] == 0.2
    assert repr(model).startswith("Ensemble(DGP(4 → 8 → 3, groups=3")
    with pytest.raises(InputError, match="no member takes num_bases"):
        build_model("dgp+sgcn", 4, 3, num_bases=2)
    with pytest.raises(InputError, match="unknown model 'gcn'.*joined by \\+"):
        build_model("dgp+gcn", 4, 3)
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([dgp])


def test_rows_are_the_normalised_mean_of_the_members_rows(toy):
    torch.manual_seed(0)
    model = build_model("dgp+sgcn", 4, 3, hidden_channels=[8], num_groups=3).eval()
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    layers = model.operators(toy)
    rows = model.predict_rows(x, layers)
    a = model.members[0].predict_rows(x, layers[0])
    b = model.members[1].predict_rows(x, layers[1])
    torch.testing.assert_close(rows, F.normalize(a + b, dim=1))
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(6))
    # a few rows only (over their receptive fields) are the same rows
    torch.testing.assert_close(model.predict_rows(x, layers, rows=torch.tensor([3, 5])), rows[[3, 5]])
    torch.testing.assert_close(model.predict_rows(x, layers, chunk_size=4), rows)
    with pytest.raises(TypeError, match="members"):
        model.prepare_inputs(x, layers)


def test_a_saved_ensemble_rebuilds_to_the_same_rows(toy):
    torch.manual_seed(0)
    model = build_model("dgp+sgcn", 4, 3, hidden_channels=[8], num_groups=3).eval()
    hparams = json.loads(json.dumps(model.hparams))  # as stored in model.safetensors' header
    again = rebuild_model(model.name, hparams).eval()
    again.load_state_dict(model.state_dict())
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(again.predict_rows(x, again.operators(toy)), model.predict_rows(x, model.operators(toy)))
