"""The interface every text encoder implements: texts in, fixed-size vectors out.

:mod:`kgzsl.text.encoders` (MiniLM, WordLlama, and the factory :func:`~kgzsl.text.encoders.get_encoder`)
and :mod:`kgzsl.text.glove` (word-vector encoders) both build on it.
"""

from __future__ import annotations

import abc

import torch

__all__ = ["TextEncoder"]


class TextEncoder(abc.ABC):
    """Maps texts to vectors of a fixed size.

    Attributes:
        name: Key that identifies the encoder *and its weights*; used in cache file names.
        dim: Size of each vector.
    """

    name: str
    dim: int

    @abc.abstractmethod
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Return a ``[len(texts), dim]`` float32 CPU tensor, not normalised (zero row: unknown)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
