"""A label stands for the backbone's classes below it: ``"cat"`` also scores as tabby, Persian, Siamese.

A candidate that is not one of the backbone's classes still has some of them below it in the
graph (espresso under "coffee", moped under "motorcycle"). Each seen class belongs to the nearest
candidate that is it or one of its ancestors (:func:`claimed_seen`), and a candidate scores as the
best of its own row and the real rows of the classes it claims (:class:`GroupHead`). The same head
lets a word with several plausible senses (``"crane"``: the machine, the bird) score as its
best-matching sense, and reports which one.

Example:
    >>> ancestors = seen_ancestors(run_dir, clf.wnids, clf.seen_nodes())
    >>> claimed_seen([cat, lynx], ancestors)     # tabby, Persian ... go to cat; lynx keeps itself
"""

from __future__ import annotations

from pathlib import Path

import torch

from kgzsl.inference.head import LinearHead

__all__ = ["GroupHead", "SeenShare", "claimed_seen", "group_logits", "seen_ancestors"]


def seen_ancestors(run_dir: Path | None, wnids: list[str], seen: torch.Tensor) -> dict[int, dict[int, int]]:
    """For each seen node, its ancestors with their hop distance (itself at 0).

    Over the hierarchical edges of the run's own graph copy when it has one
    (:meth:`kgzsl.graph.KnowledgeGraph.ancestors`), else over WordNet's hypernyms.
    """
    from kgzsl.graph.ancestors import ancestor_distances

    index = {w: i for i, w in enumerate(wnids)}
    parents: list[list[int]] = [[] for _ in wnids]
    if run_dir is not None and (run_dir / "edges.tsv").is_file() and (run_dir / "manifest.json").is_file():
        from kgzsl.graph import KnowledgeGraph

        graph = KnowledgeGraph.load(run_dir)
        for w, ups in zip(graph.wnids, graph.parents):
            if w in index:
                parents[index[w]] = [index[graph.wnids[u]] for u in ups if graph.wnids[u] in index]
    else:
        from kgzsl.graph.wordnet import load_wordnet, synset_from_wnid

        wn = load_wordnet()
        for w, i in index.items():
            try:
                synset = synset_from_wnid(wn, w)
            except ValueError:
                continue
            parents[i] = [index[p] for s in synset.hypernyms() + synset.instance_hypernyms()
                          if (p := f"n{s.offset():08d}") in index]
    return {int(j): ancestor_distances(parents, int(j)) for j in seen.tolist() if j >= 0}


def claimed_seen(candidates: list[int], ancestors: dict[int, dict[int, int]]) -> list[list[int]]:
    """Per candidate, the seen nodes it stands for besides itself.

    A seen node belongs to the nearest candidate that is it or one of its ancestors; a candidate
    that is a seen node itself claims nothing more; a candidate scores as the best of itself and
    the classes it claims (:func:`group_logits`). So with ``["cat", "lynx"]`` the photo of a
    tabby counts for "cat" (tabby is a cat and not a lynx), and "lynx" keeps only the lynx.
    A claimed class enters its candidate's score with its real row, centred on the user's images
    after ``kgzsl calibrate`` (:func:`centred_rows`), so that a class the backbone over-predicts
    there does not carry its bias into the candidate.
    """
    position = {node: c for c, node in enumerate(candidates)}
    claims: list[list[int]] = [[] for _ in candidates]
    for node, ups in ancestors.items():
        owners = [(d, position[a]) for a, d in ups.items() if a in position]
        if owners:
            d, c = min(owners)
            if d > 0:
                claims[c].append(node)
    return claims


def group_logits(logits: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """``[B, G]``: per group, the largest of its columns of ``logits`` ``[B, M]``.

    The best member, not a log-sum-exp: a sum would let a candidate with many members (``"dog"``
    claims 118 breeds) win on their number alone.
    """
    width = max(len(g) for g in groups)
    index = torch.tensor([g + [logits.size(1)] * (width - len(g)) for g in groups], device=logits.device)
    padded = torch.cat([logits, logits.new_full((logits.size(0), 1), float("-inf"))], dim=1)
    return padded[:, index].amax(dim=2)


class SeenShare:
    """How much the backbone itself believes an image shows one of some of its classes: ``log P(K | x)``.

    The backbone's logits are those of a closed world: its softmax spreads all of an image's
    probability over the classes it was trained on. A windmill photo (not one of them) still gets
    a solar dish logit, and scored with its real row, solar dish beats the windmill's predicted row.
    But the backbone's own softmax is spread thin on such a photo: it puts little of it on the
    candidates it knows. So every logit a real row gives a candidate is shifted by ``log P(K | x)``,
    the log of the backbone's probability, over all of its classes, that ``x`` is one of the
    classes ``K`` the label list stands for (seen candidates and the classes they claim). Where the
    backbone is sure the photo shows one of them, ``P`` is near 1 and nothing changes; where it
    is not, the predicted rows of the candidates it does not know get their chance. The shift is
    the same for every real row of a list, so seen candidates keep their order among themselves,
    and a list of seen classes only is scored as before.

    Args:
        rows: ``[M, D + 1]``: every class of the backbone, each with the row it is scored with.
        classes: Positions in ``rows`` of the classes ``K``.
    """

    def __init__(self, rows: torch.Tensor, classes: list[int]) -> None:
        self.head = LinearHead(rows, int8=False)
        self.classes = torch.tensor(sorted(set(classes)), dtype=torch.long, device=rows.device)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, 1]``: ``log P(K | x)`` per image (at most 0)."""
        logits = self.head.logits(features)
        return (logits[:, self.classes].logsumexp(1) - logits.logsumexp(1)).clamp(max=0.0).unsqueeze(1)


class GroupHead:
    """Labels scored over several rows: each label's logit is the best of its senses', and each
    sense's the best of its own logit and those of the seen classes below it that no other
    candidate claims (:func:`claimed_seen`).

    Args:
        every: ``[N, D + 1]`` score rows of every node.
        extra: The seen nodes some sense claims, in the order of ``claimed``.
        claimed: ``[len(extra), D + 1]`` rows a claimed seen node enters its candidate's score with.
        senses: Per label, its sense nodes (the default sense first).
        claims: Per sense (in the order of ``senses`` flattened), the seen nodes it stands for.
        share: Shifts every real row's logit (the seen senses' own, and the claimed ones) by the
            backbone's belief that the image is one of them (None: no shift).
        seen: The sense nodes scored with a real row (the backbone's classes).
    """

    def __init__(self, every: torch.Tensor, extra: list[int], claimed: torch.Tensor, senses: list[list[int]],
                 claims: list[list[int]], share: SeenShare | None = None, seen: frozenset[int] = frozenset()) -> None:
        flat = [n for ns in senses for n in ns]
        own = list(dict.fromkeys(flat))
        column = {n: i for i, n in enumerate(own)}
        below = {j: len(own) + i for i, j in enumerate(extra)}
        rows = [every[torch.tensor(own, dtype=torch.long, device=every.device)]]
        if extra:
            rows.append(claimed.to(every.device))
        self.linear = LinearHead(torch.cat(rows), int8=False)
        self.share = share
        self.real = torch.tensor([column[n] for n in own if n in seen] + list(below.values()), dtype=torch.long,
                                 device=every.device)
        self.groups = [[column[n]] + [below[j] for j in claim] for n, claim in zip(flat, claims)]
        width, start, self.members = max(len(ns) for ns in senses), 0, []
        for ns in senses:  # per label, its senses' positions in `groups`, padded with a -inf column
            self.members.append(list(range(start, start + len(ns))) + [len(flat)] * (width - len(ns)))
            start += len(ns)
        self.senses = senses

    def choose(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, C] label logits, [B, C] position of the sense that gave each one)``."""
        logits = self.linear.logits(features)
        if self.share is not None and self.real.numel():
            logits[:, self.real] += self.share(features)
        sense = group_logits(logits, self.groups)
        sense = torch.cat([sense, sense.new_full((sense.size(0), 1), float("-inf"))], dim=1)
        return sense[:, torch.tensor(self.members, device=sense.device)].max(dim=2)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` label logits."""
        return self.choose(features)[0]

    def topk(self, features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(probabilities, indices, logits)`` of the k best labels, as :meth:`LinearHead.topk`."""
        logits = self.logits(features)
        top, idx = logits.topk(k, dim=1)
        return logits.softmax(dim=1).gather(1, idx), idx, top
