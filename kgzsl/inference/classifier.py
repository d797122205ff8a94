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

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from kgzsl.utils.device import resolve_device
from kgzsl.inference.head import HeadCache, LinearHead
from kgzsl.vision.images import ImageSource, is_tensor_batch, load_batch, load_image
from kgzsl.utils.io import load_tensors, read_tensor_metadata
from kgzsl.inference.labels import LabelResolver, ResolvedLabel

__all__ = ["ZeroShotClassifier", "RunNotFoundError", "RunFormatError"]

logger = logging.getLogger(__name__)


#: concepts saved with a run (``kgzsl add-concept``) and re-added every time it is loaded
CONCEPTS_FILE = "concepts.yaml"
#: the "none of these" calibration of a run (``kgzsl calibrate``)
ABSTAIN_FILE = "abstain.json"
NONE_LABEL = "none of these"
#: label lists whose candidate heads the classifier keeps (least recently used dropped first)
HEAD_CACHE_SIZE = 8


class RunNotFoundError(FileNotFoundError):
    """A run folder is missing or incomplete."""


class RunFormatError(ValueError):
    """A run folder is corrupt or inconsistent, or does not fit the backbone it is used with."""


_RETRAIN = "retrain the run, or copy the complete run folder again"


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFormatError(f"{path} is not valid JSON ({exc}); {_RETRAIN}") from None
    if not isinstance(summary, dict):
        raise RunFormatError(f"{path} must hold a JSON object, got {type(summary).__name__}; {_RETRAIN}")
    return summary


def _read_nodes(path: Path) -> tuple[list[str], list[str], list[list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunFormatError(f"{path} is not UTF-8 text ({exc}); {_RETRAIN}") from None
    wnids, names, lemmas = [], [], []
    for lineno, line in enumerate(text.split("\n")[1:], start=2):
        line = line.removesuffix("\r")
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise RunFormatError(f"{path}:{lineno}: expected wnid, name, lemmas and gloss separated by tabs, "
                                 f"got {len(parts)} field(s); {_RETRAIN}")
        wnids.append(parts[0])
        names.append(parts[1])
        lemmas.append(parts[2].split("|") if parts[2] else [])
    if len(set(wnids)) != len(wnids):
        raise RunFormatError(f"{path} lists a node id twice; {_RETRAIN}")
    return wnids, names, lemmas


def _check_rows(run_dir: Path, summary: dict[str, Any], tensors: dict[str, torch.Tensor], meta: dict[str, str],
                num_nodes: int) -> torch.Tensor:
    """The run's ``[N, D + 1]`` rows, after checking they agree with nodes.tsv and run.json."""
    rows = tensors.get("rows")
    where = run_dir / "rows.safetensors"
    if rows is None or rows.ndim != 2 or not rows.is_floating_point():
        raise RunFormatError(f"{where} holds no [nodes, features + 1] float 'rows' tensor; {_RETRAIN}")
    if rows.size(0) != num_nodes:
        raise RunFormatError(f"{where} has {rows.size(0)} rows but {run_dir / 'nodes.tsv'} lists {num_nodes} nodes: "
                             f"the files come from different runs or graphs; {_RETRAIN}")
    expected = summary.get("num_nodes")
    if isinstance(expected, int) and expected != num_nodes:
        raise RunFormatError(f"{run_dir / 'run.json'} records {expected} nodes but {run_dir / 'nodes.tsv'} lists "
                             f"{num_nodes}: the files come from different runs or graphs; {_RETRAIN}")
    if meta.get("backbone") and summary.get("backbone") and meta["backbone"] != summary["backbone"]:
        raise RunFormatError(f"{where} was written for backbone {meta['backbone']!r} but {run_dir / 'run.json'} "
                             f"names {summary['backbone']!r}; {_RETRAIN}")
    if not torch.isfinite(rows).all():
        raise RunFormatError(f"{where} holds NaN or infinite rows (training diverged); retrain with a lower train.lr")
    return rows


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
        max_pixels: Images whose header claims more pixels are refused before decoding (see
            :func:`kgzsl.vision.images.load_image`); an attribute, so it can be changed after loading.
    """

    def __init__(self, backbone: Any, rows: torch.Tensor, wnids: Sequence[str], names: Sequence[str],
                 lemmas: Sequence[Sequence[str]], row_scale: float = 1.0, max_pixels: int = 100_000_000) -> None:
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
        self.max_pixels = int(max_pixels)
        from kgzsl.graph.wordnet import load_wordnet

        self.resolver = LabelResolver(self.wnids, self.names, self.lemmas, wordnet=load_wordnet)
        # (rows, resolved labels, LinearHead) of the last few label lists; `search` makes one per query
        self._heads = HeadCache(HEAD_CACHE_SIZE)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", backbone: Any = None,
             finetuned: bool = True) -> ZeroShotClassifier:
        """Load a trained run folder (see :mod:`kgzsl.training.run`).

        Args:
            run_dir: Folder written by ``kgzsl train``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"``...
            backbone: An already loaded backbone to reuse (must match the run's).
            finetuned: Use the backbone fine-tuned under the run's rows (``kgzsl finetune``, in
                ``<run>/finetune/``) when there is a finished one and ``backbone`` is None; False
                loads the original weights the rows were trained for.

        Raises:
            RunNotFoundError: If the folder is missing or the run did not finish.
            RunFormatError: If its files are corrupt or disagree with each other (row count vs
                nodes.tsv, backbone), or ``backbone`` is not the one the run was trained for.
            kgzsl.utils.io.TensorFileError: If rows.safetensors is not a safetensors file (never unpickled).
        """
        run_dir = Path(run_dir)
        if not (run_dir / "run.json").is_file():
            raise RunNotFoundError(f"{run_dir} is not a finished kgzsl run (no run.json); train one with "
                                   "`kgzsl train --config configs/dgp.yaml`")
        for name in ("rows.safetensors", "nodes.tsv"):
            if not (run_dir / name).is_file():
                raise RunNotFoundError(f"run {run_dir} is incomplete: {name} is missing; {_RETRAIN}")
        summary = _read_summary(run_dir / "run.json")
        tensors = load_tensors(run_dir / "rows.safetensors")
        meta = read_tensor_metadata(run_dir / "rows.safetensors")
        wnids, names, lemmas = _read_nodes(run_dir / "nodes.tsv")
        rows = _check_rows(run_dir, summary, tensors, meta, len(wnids))
        try:
            row_scale = float(meta.get("row_scale", 1.0))
        except ValueError:
            raise RunFormatError(f"{run_dir / 'rows.safetensors'}: row_scale {meta['row_scale']!r} is not a number; "
                                 f"{_RETRAIN}") from None
        trained_for = summary.get("backbone") or meta.get("backbone")
        tuned = None
        if backbone is None:
            from kgzsl.vision.backbones import load_backbone
            from kgzsl.training.checkpoint import finetuned_weights

            cfg = (summary.get("config") or {}).get("backbone") or {}
            if not (cfg.get("name") or trained_for):
                raise RunFormatError(f"{run_dir / 'run.json'} does not say which backbone the run was trained for; "
                                     f"{_RETRAIN}")
            tuned = finetuned_weights(run_dir) if finetuned else None
            weights = str(tuned[0]) if tuned else cfg.get("weights", "DEFAULT")
            backbone = load_backbone(cfg.get("name") or trained_for, weights=weights,
                                     device=str(resolve_device(device)))
            if tuned:
                digest = hashlib.sha256(tuned[0].read_bytes()).hexdigest()[:16]
                # the weights' content is part of the name: feature caches and search indexes key on it
                backbone.weights = f"{tuned[0]} (fine-tuned from {tuned[1].get('base_weights')}; sha256 {digest})"
                logger.info("run %s: using the fine-tuned backbone weights %s (finetuned=False for the original)",
                            run_dir, tuned[0])
        elif trained_for and backbone.name != trained_for:
            raise RunFormatError(f"run {run_dir} was trained for backbone {trained_for!r}, not {backbone.name!r}; "
                                 "load it without `backbone=` to use its own, or train a run for "
                                 f"{backbone.name!r} (backbone.name={backbone.name})")
        recorded = summary.get("backbone_weights")
        base = tuned[1].get("base_weights") if tuned else getattr(backbone, "weights", None)
        if recorded and base and recorded != base:
            logger.warning("run %s was trained on backbone weights %r but the backbone has %r; predictions are "
                           "only meaningful with the weights the rows were fitted to", run_dir, recorded,
                           backbone.weights)
        try:
            clf = cls(backbone, rows, wnids, names, lemmas, row_scale)
        except ValueError as exc:  # the feature size differs: another backbone or other weights
            raise RunFormatError(f"run {run_dir} does not fit this backbone: {exc}") from None
        clf.run_dir = run_dir
        clf.summary = summary
        if (run_dir / CONCEPTS_FILE).is_file():  # concepts added with `kgzsl add-concept` travel with the run
            from kgzsl.inference.concepts import load_concepts

            load_concepts(clf, run_dir / CONCEPTS_FILE)
        return clf

    def head(self, candidate_labels: Sequence[str] | str | None = None) -> tuple[torch.Tensor, list[ResolvedLabel]]:
        """The ``[C, D + 1]`` candidate rows and the resolved labels.

        The rows are unscaled (logits are ``row_scale`` times their product with ``[x, 1]``; use
        :meth:`logits`); for every node (``None``) they are :attr:`rows` itself, not a copy.
        """
        rows, resolved, _ = self._head(candidate_labels)
        return rows, resolved

    def _head(self, candidate_labels: Sequence[str] | str | None
              ) -> tuple[torch.Tensor, list[ResolvedLabel], LinearHead]:
        """``(rows, resolved, LinearHead)`` of a label list, from the LRU cache :attr:`_heads`."""
        key = _key(candidate_labels)

        def build() -> tuple[torch.Tensor, list[ResolvedLabel], LinearHead]:
            if key is None:  # every node: the head reads self.rows in place
                resolved = [ResolvedLabel(self.lemmas[i][0].replace("_", " ") if self.lemmas[i] else self.wnids[i],
                                          i, self.wnids[i], self.names[i]) for i in range(len(self.wnids))]
                rows = self.rows
            else:
                labels = key[0].split(",") if len(key) == 1 and "," in key[0] else list(key)
                resolved = self.resolver.resolve_all([label.strip() for label in labels])
                rows = self.rows[torch.tensor([r.index for r in resolved], device=self.rows.device)]
            return rows, resolved, LinearHead(rows, scale=self.row_scale)

        return self._heads.get(key, build)

    @torch.inference_mode()
    def logits(self, features: torch.Tensor, candidate_labels: Sequence[str] | None = None) -> torch.Tensor:
        """``[B, C]`` scores of pooled backbone features against the candidates."""
        return self._head(candidate_labels)[2].logits(features)

    def predict_detailed(self, images: ImageSource | Sequence[ImageSource] | torch.Tensor,
                         candidate_labels: Sequence[str] | str | None = None, top_k: int = 5,
                         batch_size: int = 32, abstain: bool = False) -> list[dict[str, Any]]:
        """Like :meth:`predict`, one record per image: ``{"image", "predictions"}`` or ``{"image", "error"}``.

        A bad image gets an ``error`` entry; the others are still classified.
        """
        _, resolved, linear = self._head(candidate_labels)  # bad labels fail before any image work
        if abstain:
            load_abstain(self)  # fails before any image work when the run was never calibrated
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
                batch, ok, errors = load_batch(chunk, self.backbone.transform, max_pixels=self.max_pixels)
                for j, msg in errors.items():
                    records[offset + j]["error"] = msg
                idx = [offset + j for j in ok]
            else:
                batch = chunk
            if batch is None or not idx:
                continue
            with torch.inference_mode():  # exact top k; see kgzsl.inference.head for the int8 shortlist
                scores, top, best = linear.topk(self.backbone(batch.to(self.backbone.device)), k)
            for row, i in enumerate(idx):
                records[i]["predictions"] = [
                    {"label": resolved[c].label, "wnid": resolved[c].wnid, "synset": resolved[c].synset,
                     "score": round(float(s), 6)} for s, c in zip(scores[row].tolist(), top[row].tolist())]
                none = abstain_entry(self, float(best[row, 0])) if abstain else None
                if none is not None:
                    records[i]["predictions"].insert(0, none)
        return records

    def predict(self, images: ImageSource | Sequence[ImageSource] | torch.Tensor,
                candidate_labels: Sequence[str] | str | None = None, top_k: int = 5,
                batch_size: int = 32, abstain: bool = False) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Zero-shot classify images, like Hugging Face's ``zero-shot-image-classification`` pipeline.

        Args:
            images: A path, a PIL image, a list of them, or a preprocessed ``[B, 3, H, W]`` tensor
                (already transformed with ``clf.backbone.transform``).
            candidate_labels: wnids, synset names or words (``"golden retriever"``); None scores
                every node of the graph.
            top_k: How many labels to return per image.
            batch_size: Images per backbone call.
            abstain: Put a ``{"label": "none of these", ...}`` entry first when the best candidate's
                logit is below the run's calibrated threshold (see :mod:`kgzsl.tasks.abstain`).

        Returns:
            For one image, a list of ``{"label", "wnid", "synset", "score"}`` sorted by score
            (softmax over the candidates); for several, one such list per image. A failed image
            gets an empty list (its error is logged; :meth:`predict_detailed` returns it).

        Raises:
            kgzsl.inference.labels.LabelError: If a candidate label cannot be resolved.
            kgzsl.vision.images.ImageLoadError: If a single image given alone cannot be loaded.
        """
        if not isinstance(images, (list, tuple)) and not is_tensor_batch(images):
            image = load_image(images, max_pixels=self.max_pixels)  # a single image: its error is raised as is
            return self.predict_detailed([image], candidate_labels, top_k, batch_size, abstain)[0]["predictions"]
        records = self.predict_detailed(images, candidate_labels, top_k, batch_size, abstain)
        return [r.get("predictions", []) for r in records]

    def add_concept(self, word_or_wnid: str, parents: Sequence[str] | str | None = None,
                    description: str | None = None, sense: str | None = None) -> ResolvedLabel:
        """Add a concept without retraining; see :func:`kgzsl.inference.concepts.add_concept`."""
        from kgzsl.inference.concepts import add_concept

        return add_concept(self, word_or_wnid, parents=parents, description=description, sense=sense)

    def save_concepts(self, path: str | Path) -> Path:
        """Write the added concepts as a YAML concept file; see :func:`kgzsl.inference.concepts.save_concepts`."""
        from kgzsl.inference.concepts import save_concepts

        return save_concepts(self, path)

    def __repr__(self) -> str:
        return f"ZeroShotClassifier(backbone={self.backbone.name!r}, classes={len(self.wnids)})"


def _key(candidate_labels: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """Cache key of a candidate label list."""
    if candidate_labels is None:
        return None
    return (candidate_labels,) if isinstance(candidate_labels, str) else tuple(candidate_labels)


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else type(source).__name__

def load_abstain(clf: Any) -> dict[str, Any]:
    """The classifier's abstain calibration (``clf.abstain`` or ``<run>/abstain.json``).

    Raises:
        ValueError: If the run was never calibrated.
    """
    found = getattr(clf, "abstain", None)
    if found is None:
        path = Path(getattr(clf, "run_dir", ".")) / ABSTAIN_FILE
        if not path.is_file():
            raise ValueError(f"abstain=True needs a calibrated threshold: run "
                             f"`kgzsl calibrate RUN --images DIR` first ({path} is missing)")
        found = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(found, dict) or not isinstance(found.get("threshold"), (int, float)):
            raise ValueError(f"{path} holds no threshold; calibrate again")
        clf.abstain = found
    return found


def abstain_entry(clf: Any, max_logit: float) -> dict[str, Any] | None:
    """The ``"none of these"`` prediction for an input whose best logit is below the threshold, else None."""
    cal = load_abstain(clf)
    if max_logit >= cal["threshold"]:
        return None
    return {"label": NONE_LABEL, "wnid": None, "synset": None, "score": None,
            "max_logit": round(float(max_logit), 6), "threshold": round(float(cal["threshold"]), 6)}
