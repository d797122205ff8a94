"""Helpers shared by the reliability tests: a toy training problem, a fake run folder, one-thread torch."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from kgzsl.training.config import TrainConfig
from kgzsl.utils.io import save_tensors
from kgzsl.models import build_model
from kgzsl.training.fit import FitResult, fit

from conftest import random_tree


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run tiny models on ``n`` intra-op threads (on shared, busy CPUs 2 threads are ~100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


TOY_NODES = 40


def toy_problem(num_nodes: int = TOY_NODES) -> dict:
    """A random DAG with seeded node features and target rows: 15 training, 5 validation rows."""
    graph = random_tree(num_nodes, seed=1, extra_parents=5)
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(num_nodes, 16, generator=g), dim=1)
    rows = torch.arange(num_nodes - 20, num_nodes)
    # smooth targets (a linear map of the features) so that validation improves for a while
    targets = F.normalize(x[rows] @ torch.randn(16, 8, generator=g), dim=1)
    return {"graph": graph, "x": x, "train_rows": rows[:15], "train_targets": targets[:15],
            "val_rows": rows[15:], "val_targets": targets[15:]}


def toy_fit(epochs: int = 60, checkpoint_path: Path | None = None, resume: bool = False, every: int = 7,
            seed: int = 1, num_nodes: int = TOY_NODES, lr: float = 1e-2) -> tuple[torch.Tensor, FitResult]:
    """Build a DGP with dropout 0.5 from ``seed`` and fit it on :func:`toy_problem`; return all its rows."""
    p = toy_problem(num_nodes)
    torch.manual_seed(seed)
    model = build_model("dgp", 16, 8, hidden_channels=[32], dropout=0.5)
    layers = model.operators(p["graph"])
    config = TrainConfig(epochs=epochs, lr=lr, patience=epochs, checkpoint_every=every)
    result = fit(model, p["x"], layers, p["train_rows"], p["train_targets"], p["val_rows"], p["val_targets"],
                 config, progress=False, checkpoint_path=checkpoint_path, resume=resume)
    with torch.no_grad():
        return model.predict_rows(p["x"], layers), result


class FakeBackbone(torch.nn.Module):
    """Enough of :class:`kgzsl.vision.backbones.Backbone` for loading and predicting: mean colour features."""

    def __init__(self, name: str = "fakenet", feature_dim: int = 3, weights: str = "fake weights") -> None:
        super().__init__()
        self.name, self.feature_dim, self.weights = name, feature_dim, weights
        self.register_buffer("anchor", torch.zeros(1))

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @staticmethod
    def transform(im) -> torch.Tensor:
        import numpy as np

        arr = np.asarray(im.resize((8, 8)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))[:, : self.feature_dim]


def fake_run(folder: Path, num_nodes: int = 3, feature_dim: int = 3, backbone: str = "fakenet",
             rows: torch.Tensor | None = None) -> Path:
    """A minimal run folder (run.json, rows.safetensors, nodes.tsv) for a :class:`FakeBackbone`."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ["cat", "dog", "car", "bus", "cup"][:num_nodes]
    if rows is None:
        rows = F.normalize(torch.randn(num_nodes, feature_dim + 1, generator=torch.Generator().manual_seed(0)), dim=1)
    save_tensors(folder / "rows.safetensors", {"rows": rows}, metadata={"row_scale": "1.0", "backbone": backbone})
    (folder / "nodes.tsv").write_text("wnid\tname\tlemmas\tgloss\n" + "".join(
        f"x{i}\t{n}.n.01\t{n}\ta {n}\n" for i, n in enumerate(names)))
    (folder / "run.json").write_text(json.dumps({"backbone": backbone, "num_nodes": num_nodes,
                                                 "backbone_weights": "fake weights"}))
    return folder
