"""Hand-built candidate rows and features for the head tests, and the float32 top-k comparison."""

import pytest
import torch

import kgzsl.inference.head as head_module
from kgzsl.inference.head import LinearHead

needs_int8 = pytest.mark.skipif(head_module._kernel() is None, reason="numba missing: no int8 head")


def head_rows(c: int, d: int, seed: int, outliers: bool = False) -> torch.Tensor:
    """``[c, d + 1]`` rows ``[W | b]``; neighbouring rows nearly equal, as sibling classes are (small top-k gaps)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, d + 1, generator=g)
    w[1::2] = w[0::2][: w[1::2].size(0)] + 0.01 * torch.randn(w[1::2].shape, generator=g)
    if outliers:
        w[:, 3] *= 40.0
    return w


def low_rank_rows(c: int, d: int, rank: int, seed: int, noise: float = 1e-3) -> torch.Tensor:
    """``[c, d + 1]`` rows ``[W | b]`` of rank ``rank`` plus a little full-rank noise, siblings nearly equal."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, rank, generator=g) @ torch.randn(rank, d, generator=g) / rank ** 0.5
    w += 0.3 * torch.randn(d, generator=g) + noise * torch.randn(c, d, generator=g)
    w[1::2] = w[0::2][: w[1::2].size(0)] + 0.01 * torch.randn(w[1::2].shape, generator=g)
    return torch.cat([w, torch.randn(c, 1, generator=g)], dim=1)


def head_features(b: int, d: int, seed: int, kind: str) -> torch.Tensor:
    """``[b, d]`` features of one kind: relu (pooled ReLU: many exact zeros, a few large), gauss,
    spiky, zero, constant or negative."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g)
    if kind == "relu":
        x = torch.relu(x) ** 2
    elif kind == "spiky":
        x[:, 0] = 500.0
    elif kind == "zero":
        x = torch.zeros(b, d)
    elif kind == "constant":
        x = torch.full((b, d), 3.0)
    elif kind == "negative":
        x = -torch.relu(x) - 1.0
    return x


def assert_topk_matches_float32(fast: LinearHead, exact: LinearHead, x: torch.Tensor, ks=(1, 5, 40)) -> None:
    """``fast.topk`` gives the float32 head's indices and logits, and its probabilities within 5%.

    The softmax normaliser takes int8 scores outside the shortlist: on these peaked synthetic rows
    that costs up to ~3% (DGP's rows on real photos: under 0.3%)."""
    for k in ks:
        p, i, v = fast.topk(x, k)
        pe, ie, ve = exact.topk(x, k)
        assert p.shape == i.shape == v.shape == (x.size(0), k) and i.dtype == torch.int64
        assert torch.equal(i, ie)
        torch.testing.assert_close(v, ve, rtol=0, atol=1e-4)
        torch.testing.assert_close(p, pe, rtol=0.05, atol=1e-6)
        assert (p[:, :-1] >= p[:, 1:]).all()
