"""The node feature matrix of a graph.

Every graph node (a WordNet noun synset) is described by a short text, its lemma names
(``"dog, domestic dog, Canis familiaris"``), optionally followed by its gloss. A text encoder
(:mod:`kgzsl.text.encoders`) turns those texts into vectors; :func:`node_features` L2-normalises
the rows and caches the matrix beside the graph, keyed by encoder and options and checked against
a hash of the node list, so a changed graph never reuses stale features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch

from kgzsl.utils.io import load_tensors, read_tensor_metadata, save_tensors
from kgzsl.text.encoders import ENCODERS, MiniLMEncoder, TextEncoder, WordLlamaEncoder, get_encoder
from kgzsl.text.glove import Glove6BEncoder, GloveEncoder

__all__ = ["TextEncoder", "MiniLMEncoder", "WordLlamaEncoder", "GloveEncoder", "Glove6BEncoder", "get_encoder",
           "node_texts", "node_features", "ENCODERS"]

logger = logging.getLogger(__name__)


def node_texts(lemmas: list[list[str]], glosses: list[str], use_gloss: bool = False) -> list[str]:
    """Describe each node by its lemma names, optionally with its gloss.

    Args:
        lemmas: Raw WordNet lemma names per node (``["dog", "domestic_dog"]``).
        glosses: One gloss per node.
        use_gloss: Append ``": " + gloss`` (when the gloss is not empty).

    Returns:
        One text per node, e.g. ``"dog, domestic dog, Canis familiaris"``.

    Raises:
        ValueError: If ``lemmas`` and ``glosses`` differ in length.
    """
    if len(lemmas) != len(glosses):
        raise ValueError(f"{len(lemmas)} lemma lists but {len(glosses)} glosses")
    texts = []
    for names, gloss in zip(lemmas, glosses):
        seen: dict[str, str] = {}
        for name in names:
            clean = " ".join(name.replace("_", " ").split())
            if clean:
                seen.setdefault(clean.casefold(), clean)
        text = ", ".join(seen.values())
        if use_gloss and gloss and gloss.strip():
            text += ": " + gloss.strip()
        texts.append(text)
    return texts


def _node_hash(wnids: list[str], texts: list[str]) -> str:
    blob = json.dumps([list(wnids), texts], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _read_cache(path: Path, node_hash: str, num_nodes: int) -> torch.Tensor | None:
    try:
        if read_tensor_metadata(path).get("node_hash") != node_hash:
            logger.info("feature cache %s was built for another node list; recomputing", path)
            return None
        feats = load_tensors(path)["features"]
    except Exception as exc:  # a corrupt cache is recomputed, never fatal
        logger.warning("unreadable feature cache %s (%s); recomputing", path, exc)
        return None
    if feats.ndim != 2 or feats.shape[0] != num_nodes:
        logger.info("feature cache %s has shape %s for %d nodes; recomputing", path, tuple(feats.shape), num_nodes)
        return None
    return feats


def node_features(graph: Any, encoder: str | TextEncoder = "minilm", use_gloss: bool = False,
                  cache: bool = True, device: str | torch.device = "cpu", progress: bool = True) -> torch.Tensor:
    """Text features of every graph node, L2-normalised, cached beside the graph.

    Args:
        graph: Object with ``wnids``, ``lemmas``, ``glosses`` and ``path`` (a folder or ``None``).
        encoder: Encoder spec for :func:`get_encoder`, or a :class:`TextEncoder`.
        use_gloss: Append each node's gloss to its text.
        cache: Read/write ``graph.path/features/<key>.safetensors`` (skipped if ``graph.path`` is None).
        device: Where a neural encoder runs; the result is always on the CPU.
        progress: The encoder's progress bar for many nodes (for an encoder spec; never under
            ``TQDM_DISABLE``, which the CLI's ``-q`` sets).

    Returns:
        ``[N, D]`` float32 matrix; rows have unit norm, except all-zero rows of unknown nodes.

    Raises:
        ValueError: If the encoder spec is unknown or the graph's lists differ in length.
        FileNotFoundError: If a GloVe path does not exist.
        MissingPackageError: If ``"glove-6b-50d"`` is asked for without its package installed.
        RuntimeError: If the encoder returns a matrix of the wrong shape.
    """
    enc = get_encoder(encoder, device, progress=progress) if isinstance(encoder, str) else encoder
    wnids = list(graph.wnids)
    texts = node_texts(graph.lemmas, graph.glosses, use_gloss)
    if len(wnids) != len(texts):
        raise ValueError(f"graph has {len(wnids)} wnids but {len(texts)} lemma lists")
    node_hash = _node_hash(wnids, texts)
    file = None
    if cache and getattr(graph, "path", None) is not None:
        key = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{enc.name}__gloss{int(use_gloss)}")
        file = Path(graph.path) / "features" / f"{key}.safetensors"
        if file.is_file():
            feats = _read_cache(file, node_hash, len(texts))
            if feats is not None:
                logger.info("node features: %s (cached)", file)
                return feats
    t0 = time.perf_counter()
    raw = enc.encode(texts).float().cpu()
    if raw.shape != (len(texts), enc.dim):
        raise RuntimeError(f"{enc!r} returned shape {tuple(raw.shape)} for {len(texts)} texts")
    feats = torch.nn.functional.normalize(torch.nan_to_num(raw), dim=1)
    logger.info("node features: %d nodes with %s (gloss=%s) in %.1fs", len(texts), enc.name,
                use_gloss, time.perf_counter() - t0)
    if file is not None:
        save_tensors(file, {"features": feats},
                     metadata={"node_hash": node_hash, "encoder": enc.name, "use_gloss": str(use_gloss),
                               "num_nodes": str(len(texts))})
        logger.info("node features cached at %s", file)
    return feats
