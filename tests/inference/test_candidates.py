"""CandidateScoring: which row scores each node, on a hand-built backbone of three classes."""

from __future__ import annotations

import pytest
import torch

from kgzsl.errors import InputError
from kgzsl.inference.candidates import CandidateScoring
from kgzsl.inference.head import INT8_MIN_ROWS, SplitHead
from kgzsl.inference.labels import ResolvedLabel
from kgzsl.inference.claims import GroupHead


class _Backbone:
    """Three classes of its own (wnids a, b, c), 4-d features."""

    wnids = ("a", "b", "c")

    def __init__(self) -> None:
        self.rows = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))

    def classifier_rows(self) -> torch.Tensor:
        return self.rows


def _predicted(n: int = 6) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 5, generator=torch.Generator().manual_seed(1)), dim=1)


def test_mode_auto_follows_the_backbone_and_unknown_modes_are_refused():
    assert CandidateScoring(_Backbone()).mode == "calibrated"
    assert CandidateScoring(object()).mode == "predicted"  # no rows of its own
    with pytest.raises(InputError, match="'auto', 'calibrated' or 'predicted'"):
        CandidateScoring(_Backbone(), "papers")


def test_seen_nodes_keep_the_backbones_rows_and_added_nodes_get_predicted_rows():
    bb, rows = _Backbone(), _predicted()
    seen = torch.tensor([4, 0, -1])  # class a is node 4, b is node 0, c is not a node
    scoring = CandidateScoring(bb, "calibrated", row_scale=3.0)
    every = scoring.score_rows(rows, lambda: seen)
    torch.testing.assert_close(every[4], bb.rows[0])
    torch.testing.assert_close(every[0], bb.rows[1])
    torch.testing.assert_close(every[2], 3.0 * rows[2])
    assert scoring.score_rows(rows, lambda: seen) is every  # built once
    new = _predicted(2)
    scoring.replace_from(6, new)  # two concepts appended
    torch.testing.assert_close(scoring.score_rows(rows, lambda: seen)[6:], 3.0 * new)
    papers = CandidateScoring(bb, "predicted", row_scale=3.0).score_rows(rows, lambda: seen)
    torch.testing.assert_close(papers, 3.0 * rows)


def test_calibrating_rebuilds_the_rows_centred_on_the_images():
    bb, rows, seen = _Backbone(), _predicted(), torch.tensor([4, 0, -1])
    scoring = CandidateScoring(bb, "calibrated", row_scale=3.0)
    before = scoring.score_rows(rows, lambda: seen)
    feats = torch.rand(30, 4, generator=torch.Generator().manual_seed(2)) * 2
    calib = scoring.calibrate(feats, "toy images")
    assert scoring.calibration is calib and calib.source == "toy images"
    after = scoring.score_rows(rows, lambda: seen)
    assert not torch.allclose(after, before)
    logits = feats @ after[:, :-1].T + after[:, -1]
    assert float(logits[:, 2].mean()) == pytest.approx(calib.target_mean, abs=1e-4)
    assert scoring.adapter() is not None  # the calibration keeps the features a label list is fitted to
    scoring.mode = "predicted"
    assert scoring.adapter() is None


def test_heads_split_the_backbones_rows_from_predicted_ones_and_group_senses(monkeypatch):
    bb, seen = _Backbone(), torch.tensor([0, 1, 2])
    scoring = CandidateScoring(bb, "calibrated", row_scale=1.0)
    n = INT8_MIN_ROWS + 4
    every = torch.randn(n, 5, generator=torch.Generator().manual_seed(3))
    head = scoring.linear(every, list(range(n)), seen)
    assert isinstance(head, SplitHead)  # nodes 0-2 are the backbone's, the others predicted
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(head.logits(x), x @ every[:, :-1].T + every[:, -1], atol=1e-4, rtol=1e-4)
    ancestors = {0: {0: 0, 7: 1}, 1: {1: 0}, 2: {2: 0}}  # node 7 is class a's parent
    monkeypatch.setattr("kgzsl.inference.candidates.seen_ancestors", lambda run_dir, wnids, seen: ancestors)
    resolved = [ResolvedLabel("parent", 7, "p", "p.n.01"), ResolvedLabel("b", 1, "b", "b.n.01")]
    group = scoring.label_head(every, resolved, seen, [str(i) for i in range(n)])
    assert isinstance(group, GroupHead)  # "parent" also stands for class a below it
    logits = group.logits(x)
    real = x @ bb.rows[:, :-1].T + bb.rows[:, -1]
    own = x @ every[7, :-1] + every[7, -1]
    torch.testing.assert_close(logits[:, 0], torch.maximum(own, real[:, 0]))
    torch.testing.assert_close(logits[:, 1], x @ every[1, :-1] + every[1, -1])
