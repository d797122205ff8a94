"""CandidateScoring: which row scores each node, on a hand-built backbone of three classes."""

from __future__ import annotations

import pytest
import torch

from kgzsl.errors import InputError
from kgzsl.inference.candidates import CandidateScoring
from kgzsl.inference.head import INT8_MIN_ROWS, SplitHead
from kgzsl.inference.labels import ResolvedLabel
from kgzsl.inference.claims import GroupHead
from kgzsl.inference.scoring import fit_calibration


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
    calib = fit_calibration(feats, bb.classifier_rows(), "toy images")
    scoring.use(calib)
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
    share = real.softmax(1)[:, :2].sum(1).log()  # the backbone's belief in a or b, its classes in the list
    torch.testing.assert_close(logits[:, 0], torch.maximum(own, real[:, 0] + share))  # parent's own row: no shift
    torch.testing.assert_close(logits[:, 1], x @ every[1, :-1] + every[1, -1] + share)


def test_real_rows_give_way_where_the_backbone_believes_in_none_of_its_candidates():
    """A seen candidate's logit is shifted by log P(seen candidates | x); a list of one kind is not."""
    bb, seen = _Backbone(), torch.tensor([0, 1, 2])
    bb.rows = torch.tensor([[4.0, 0, 0, 0, 0], [0, 4.0, 0, 0, 0], [0, 0, 4.0, 0, 0]])
    scoring = CandidateScoring(bb, "calibrated", row_scale=1.0)
    every = torch.cat([bb.rows, torch.tensor([[0, 0, 0.5, 0, 0.3]])])  # node 3, "mill": a predicted row
    wnids = ["a", "b", "c", "mill"]
    labels = [ResolvedLabel("a", 0, "a", "a.n.01"), ResolvedLabel("mill", 3, "mill", "mill.n.01")]
    head = scoring.label_head(every, labels, seen, wnids)
    photo_of_c = torch.tensor([[0.3, 0.0, 1.0, 0.0]])  # the backbone sees its class c, not a candidate
    real = (photo_of_c @ bb.rows[:, :-1].T).squeeze(0)  # a 1.2, b 0, c 4.0; mill's predicted row gives 0.8
    assert float(real[0]) > float(photo_of_c @ every[3, :-1] + every[3, -1])  # closed world: a would win
    torch.testing.assert_close(head.logits(photo_of_c)[0, 0], real[0] + real.softmax(0)[0].log())
    assert head.logits(photo_of_c).argmax(1).item() == 1  # P(a | x) = 0.056: mill wins
    photo_of_a = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # P(a | x) = 0.96: a keeps its logit, nearly
    assert head.logits(photo_of_a).argmax(1).item() == 0
    assert float(head.logits(photo_of_a)[0, 0]) == pytest.approx(
        4.0 + float((photo_of_a @ bb.rows[:, :-1].T).log_softmax(1)[0, 0]))
    only_seen = [ResolvedLabel("a", 0, "a", "a.n.01"), ResolvedLabel("b", 1, "b", "b.n.01")]
    torch.testing.assert_close(scoring.label_head(every, only_seen, seen, wnids).logits(photo_of_c),
                               photo_of_c @ bb.rows[:2, :-1].T)  # one kind only: the closed world's logits
    every_class = [*only_seen, ResolvedLabel("c", 2, "c", "c.n.01"), labels[1]]  # all three classes, and mill
    head = scoring.label_head(every, every_class, seen, wnids)
    assert not isinstance(head, GroupHead)  # P(K | x) = 1: no shift, and a long list keeps its (int8) split head
    torch.testing.assert_close(head.logits(photo_of_c), photo_of_c @ every[:, :-1].T + every[:, -1])
