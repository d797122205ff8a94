"""ZeroShotClassifier: a frozen backbone plus predicted classifier rows, for any candidate labels.

Prediction is a fixed linear head: the pooled image feature, with a constant 1 appended, is
dotted with the predicted ``[W | b]`` rows of the candidate classes. No graph work happens at
predict time; the candidate matrix is built once per label list and reused.

Example:
    >>> clf = ZeroShotClassifier.load("runs/dgp")
    >>> clf.predict("cat.jpg", candidate_labels=["cat", "dog", "bear"])
    [{'label': 'cat', 'wnid': 'n02121620', 'synset': 'cat.n.01', 'score': 0.93}, ...]
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from kgzsl.device import resolve_device
from kgzsl.images import ImageSource, is_tensor_batch, load_batch, load_image
from kgzsl.io import load_tensors
from kgzsl.labels import LabelResolver, ResolvedLabel

__all__ = ["ZeroShotClassifier", "RunNotFoundError"]

logger = logging.getLogger(__name__)


class RunNotFoundError(FileNotFoundError):
    """A run folder is missing or incomplete."""


def _read_nodes(path: Path) -> tuple[list[str], list[str], list[list[str]]]:
    wnids, names, lemmas = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        wnids.append(parts[0])
        names.append(parts[1])
        lemmas.append(parts[2].split("|") if parts[2] else [])
    return wnids, names, lemmas


class ZeroShotClassifier:
    """Scores images against any classes of the run's graph.

    Args:
        backbone: The frozen backbone the rows were trained for.
        rows: ``[N, D + 1]`` predicted unit rows, one per graph node.
        wnids: Node ids in row order.
        names: Synset names in row order.
        lemmas: Lemma names per node.
        row_scale: Mean norm of the backbone's own rows; logits are scaled by it so that softmax
            scores have the sharpness of the original classifier.
    """

    def __init__(self, backbone: Any, rows: torch.Tensor, wnids: Sequence[str], names: Sequence[str],
                 lemmas: Sequence[Sequence[str]], row_scale: float = 1.0) -> None:
        if rows.size(0) != len(wnids):
            raise ValueError(f"{rows.size(0)} rows but {len(wnids)} nodes")
        if rows.size(1) != backbone.feature_dim + 1:
            raise ValueError(f"rows have {rows.size(1)} columns but backbone {backbone.name} gives "
                             f"{backbone.feature_dim}-d features (+1 bias); the run was trained for another backbone")
        self.backbone = backbone
        self.rows = rows.to(backbone.device)
        self.wnids = list(wnids)
        self.names = list(names)
        self.lemmas = [list(x) for x in lemmas]
        self.row_scale = float(row_scale)
        from kgzsl.graph.wordnet import load_wordnet

        self.resolver = LabelResolver(self.wnids, self.names, self.lemmas, wordnet=load_wordnet)
        self._heads: dict[tuple[str, ...] | None, tuple[torch.Tensor, list[ResolvedLabel]]] = {}

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", backbone: Any = None) -> ZeroShotClassifier:
        """Load a trained run folder (see :mod:`kgzsl.run`).

        Args:
            run_dir: Folder written by ``kgzsl train``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``...
            backbone: An already loaded backbone to reuse (must match the run's).

        Raises:
            RunNotFoundError: If the folder is missing or the run did not finish.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "run.json").is_file():
            raise RunNotFoundError(f"{run_dir} is not a finished kgzsl run (no run.json); train one with "
                                   "`kgzsl train --config configs/dgp.yaml`")
        summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        tensors = load_tensors(run_dir / "rows.safetensors")
        from safetensors import safe_open

        with safe_open(str(run_dir / "rows.safetensors"), framework="pt") as fh:
            meta = fh.metadata() or {}
        wnids, names, lemmas = _read_nodes(run_dir / "nodes.tsv")
        if backbone is None:
            from kgzsl.backbones import load_backbone

            cfg = summary.get("config", {}).get("backbone", {})
            backbone = load_backbone(cfg.get("name", summary["backbone"]), weights=cfg.get("weights", "DEFAULT"),
                                     device=str(resolve_device(device)))
        elif backbone.name != summary.get("backbone"):
            raise ValueError(f"run {run_dir} was trained for backbone {summary.get('backbone')!r}, "
                             f"not {backbone.name!r}")
        clf = cls(backbone, tensors["rows"], wnids, names, lemmas, float(meta.get("row_scale", 1.0)))
        clf.run_dir = run_dir
        clf.summary = summary
        return clf

    def head(self, candidate_labels: Sequence[str] | str | None = None) -> tuple[torch.Tensor, list[ResolvedLabel]]:
        """The ``[C, D + 1]`` candidate matrix and the resolved labels (cached per label list)."""
        key = None if candidate_labels is None else (
            (candidate_labels,) if isinstance(candidate_labels, str) else tuple(candidate_labels))
        if key not in self._heads:
            if key is None:
                resolved = [ResolvedLabel(self.lemmas[i][0].replace("_", " ") if self.lemmas[i] else self.wnids[i],
                                          i, self.wnids[i], self.names[i]) for i in range(len(self.wnids))]
            else:
                labels = key[0].split(",") if len(key) == 1 and "," in key[0] else list(key)
                resolved = self.resolver.resolve_all([label.strip() for label in labels])
            index = torch.tensor([r.index for r in resolved], device=self.rows.device)
            self._heads[key] = (self.rows[index] * self.row_scale, resolved)
        return self._heads[key]

    @torch.inference_mode()
    def logits(self, features: torch.Tensor, candidate_labels: Sequence[str] | None = None) -> torch.Tensor:
        """``[B, C]`` scores of pooled backbone features against the candidates."""
        matrix, _ = self.head(candidate_labels)
        return features @ matrix[:, :-1].T + matrix[:, -1]

    def predict_detailed(self, images: ImageSource | Sequence[ImageSource] | torch.Tensor,
                         candidate_labels: Sequence[str] | str | None = None, top_k: int = 5,
                         batch_size: int = 32) -> list[dict[str, Any]]:
        """Like :meth:`predict`, one record per image: ``{"image", "predictions"}`` or ``{"image", "error"}``.

        A bad image gets an ``error`` entry; the others are still classified.
        """
        matrix, resolved = self.head(candidate_labels)  # bad labels fail before any image work
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, len(resolved))
        if is_tensor_batch(images):
            sources: list[Any] = [f"tensor[{i}]" for i in range(images.size(0))]
            chunks = [(list(range(s, min(s + batch_size, len(sources)))), images[s:s + batch_size], {})
                      for s in range(0, len(sources), batch_size)]
        else:
            sources = list(images) if isinstance(images, (list, tuple)) else [images]
            chunks = ((None, sources[s:s + batch_size], s) for s in range(0, len(sources), batch_size))
        records: list[dict[str, Any]] = [{"image": _describe(s)} for s in sources]
        for idx, chunk, offset in chunks:
            if idx is None:
                batch, ok, errors = load_batch(chunk, self.backbone.transform)
                for j, msg in errors.items():
                    records[offset + j]["error"] = msg
                idx = [offset + j for j in ok]
            else:
                batch = chunk
            if batch is None or not idx:
                continue
            with torch.inference_mode():
                probs = self.logits(self.backbone(batch.to(self.backbone.device)), candidate_labels).softmax(-1)
            scores, top = probs.topk(k, dim=-1)
            for row, i in enumerate(idx):
                records[i]["predictions"] = [
                    {"label": resolved[c].label, "wnid": resolved[c].wnid, "synset": resolved[c].synset,
                     "score": round(float(s), 6)} for s, c in zip(scores[row].tolist(), top[row].tolist())]
        return records

    def predict(self, images: ImageSource | Sequence[ImageSource] | torch.Tensor,
                candidate_labels: Sequence[str] | str | None = None, top_k: int = 5,
                batch_size: int = 32) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Zero-shot classify images, like Hugging Face's ``zero-shot-image-classification`` pipeline.

        Args:
            images: A path, a PIL image, a list of them, or a preprocessed ``[B, 3, H, W]`` tensor
                (already transformed with ``clf.backbone.transform``).
            candidate_labels: wnids, synset names or words (``"golden retriever"``); None scores
                every node of the graph.
            top_k: How many labels to return per image.
            batch_size: Images per backbone call.

        Returns:
            For one image, a list of ``{"label", "wnid", "synset", "score"}`` sorted by score
            (softmax over the candidates); for several, one such list per image. A failed image
            gets an empty list (its error is logged; :meth:`predict_detailed` returns it).

        Raises:
            kgzsl.labels.LabelError: If a candidate label cannot be resolved.
            kgzsl.images.ImageLoadError: If a single image given alone cannot be loaded.
        """
        if not isinstance(images, (list, tuple)) and not is_tensor_batch(images):
            image = load_image(images)  # a single image: its load error is raised as is
            return self.predict_detailed([image], candidate_labels, top_k, batch_size)[0]["predictions"]
        records = self.predict_detailed(images, candidate_labels, top_k, batch_size)
        return [r.get("predictions", []) for r in records]

    def __repr__(self) -> str:
        return f"ZeroShotClassifier(backbone={self.backbone.name!r}, classes={len(self.wnids)})"


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else type(source).__name__
