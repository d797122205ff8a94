"""A label stands for the backbone's classes below it that no nearer candidate claims."""

from __future__ import annotations

import pytest
import torch

from kgzsl.inference.classifier import ZeroShotClassifier
from kgzsl.inference.claims import GroupHead, claimed_seen, group_logits


def test_a_candidate_claims_the_seen_nodes_below_it_that_no_nearer_candidate_claims():
    # seen nodes 5 (tabby), 6 (lynx), 7 (red fox); ancestors with hop distances
    ancestors = {5: {5: 0, 3: 1, 1: 2}, 6: {6: 0, 4: 1, 1: 2}, 7: {7: 0, 2: 1}}
    # candidates: cat (1), lynx (6), fox (2): lynx is its own; tabby goes to cat; red fox to fox
    assert claimed_seen([1, 6, 2], ancestors) == [[5], [], [7]]
    assert claimed_seen([1], ancestors) == [[5, 6]]
    assert claimed_seen([9], ancestors) == [[]]


def test_group_logits_are_the_best_of_their_columns():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    out = group_logits(logits, [[0], [1, 2], [1]])
    torch.testing.assert_close(out, torch.tensor([[1.0, 3.0, 2.0], [0.0, 5.0, -1.0]]))


def test_a_group_head_scores_each_sense_as_its_best_member_and_reports_the_sense():
    every = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # nodes 0-2, 2-d features + bias
    claimed = torch.tensor([[0.0, 2.0, 0.0]])  # seen node 5, claimed by node 1
    head = GroupHead(every, [5], claimed, senses=[[0, 2], [1]], claims=[[], [], [5]])
    x = torch.tensor([[-1.0, 0.5], [2.0, 0.0]])
    logits, sense = head.choose(x)
    torch.testing.assert_close(logits, torch.tensor([[1.0, 1.0], [2.0, 0.0]]))  # label 1: max(own 0.5, claimed 1.0)
    assert sense[:, 0].tolist() == [1, 0]  # label 0: node 2 for the first image, node 0 for the second
    probs, idx, top = head.topk(x, 1)
    assert idx[:, 0].tolist() == [0, 0] and probs[0, 0] == pytest.approx(0.5)


def test_a_parent_label_stands_for_its_seen_children(tiny_run):
    from kgzsl.vision.samples import demo_photos

    chelsea = [p for p in demo_photos() if p.stem == "chelsea"]
    if not chelsea:
        pytest.skip("scikit-image (the chelsea photo) is not installed")
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    preds = clf.predict(chelsea[0], ["cat", "dog", "bear"], top_k=3)
    assert preds[0]["label"] == "cat", preds  # cat.n.01 is not a backbone class; tabby & co are, below it
    from kgzsl.graph.wordnet import load_wordnet

    top = load_wordnet().synset(clf.predict(chelsea[0], top_k=1)[0]["synset"])
    assert "cat.n.01" in {top.name()} | {h.name() for h in top.closure(lambda t: t.hypernyms())}, top  # a cat
