"""Crash-safe file writing and safe tensor files.

Every artifact kgzsl writes (graphs, feature caches, checkpoints, predicted rows) goes through
:func:`atomic_path`: the content is written to a temporary file in the same directory and then
renamed over the target, so an interrupted process leaves either the old file or the new one,
never half of one. Tensors are stored as safetensors, which hold no code.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from kgzsl.errors import InputError, NotFoundError, OutputError

__all__ = ["TensorFileError", "cannot_write", "check_output_file", "check_writable", "atomic_path", "write_text", "write_bytes", "figure_png", "write_json", "save_tensors", "load_tensors",
           "optimizer_to_tensors", "optimizer_from_tensors",
           "read_tensor_metadata"]


class TensorFileError(InputError):
    """A tensor file exists but is not a readable safetensors file (truncated, corrupt, or a pickle)."""


def cannot_write(path: str | os.PathLike, exc: OSError) -> OutputError:
    """The error for a file or folder ``path`` that cannot be written (``exc`` says why)."""
    return OutputError(f"cannot write {path}: {exc.strerror or exc}; choose a folder you can write to")


def _folder_in_the_way(path: Path, option: str | None = None, example: str = "out.json") -> OutputError:
    """The error for an output file ``path`` that is an existing folder."""
    fix = f"give the path of a file, e.g. {path / example}"
    return OutputError(f"cannot write {path}: it is a folder; {fix}",
                       cli_message=f"{option} {path} is a folder; {fix}" if option else None)


def check_output_file(path: str | os.PathLike, option: str | None = None, example: str = "out.json") -> Path:
    """``path`` as a Path, after checking that a file can be written there: call it before any long work.

    Creates nothing (a hidden folder is made and removed in the nearest existing folder, which meets
    every obstacle the write would: a file in the way, no permission, a read-only file system).

    Args:
        path: The output file.
        option: The command-line option that named it (``"--json-out"``), for the message the
            ``kgzsl`` command prints; None: the message alone.
        example: A file name the message suggests inside ``path`` when it is a folder.

    Raises:
        kgzsl.errors.OutputError: If ``path`` is a folder, or the file cannot be written there.
    """
    path = Path(path)
    if path.is_dir():
        raise _folder_in_the_way(path, option, example)
    check_writable(path.absolute().parent, path)
    return path


def check_writable(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> None:
    """Fail if ``folder`` cannot be created or written to; creates nothing: call it before long work.

    Makes (and removes) a hidden folder in ``folder`` or its nearest existing parent, which meets
    every obstacle the real write would: a file in the way, no permission, a read-only file system.

    Args:
        folder: The folder to be written (it may not exist yet).
        target: What the error names (a file in ``folder``); ``folder`` itself when None.

    Raises:
        kgzsl.errors.OutputError: If it cannot.
    """
    try:
        probe = Path(folder).absolute()
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        tempfile.TemporaryDirectory(prefix=".kgzsl-write-check-", dir=probe).cleanup()
    except OSError as exc:
        raise cannot_write(target if target is not None else folder, exc) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Args:
        path: Final location of the file. Its parent directory is created if missing.

    Raises:
        kgzsl.errors.OutputError: If the folder cannot be created or written to, or ``path`` is a
            folder (checked before the block runs; :func:`check_output_file` checks it before any work).

    Yields:
        A temporary path in the same directory to write to. Its name (``.<name>.XXXX.tmp``, hidden)
        can never be taken for the artifact; a process killed mid-write may leave it behind.

    The new file gets the permissions of the file it replaces, or the usual ``0666 & ~umask`` of a
    new file (``mkstemp`` alone would make every artifact private to its owner).
    """
    path = Path(path)
    if path.is_dir():  # os.replace cannot put a file there: say so before the content is computed
        raise _folder_in_the_way(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    tmp_path = Path(tmp)
    try:  # from here on an interruption (Ctrl-C, SIGTERM) removes the temporary file
        os.close(fd)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _mode_for(path))
        try:
            os.replace(tmp_path, path)
        except IsADirectoryError:  # a folder made there while the block ran
            raise _folder_in_the_way(path) from None
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read once (reading it means setting it for an instant)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable across a power cut too (best effort; not possible on every OS)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box), drawn in memory."""
    import io as _io

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Save named tensors as a safetensors file, atomically.

    Args:
        path: Target ``.safetensors`` file.
        tensors: Name to tensor; tensors are made contiguous and moved to the CPU.
        metadata: Optional string-to-string metadata stored in the header.
    """
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file (no code can run while loading).

    Raises:
        FileNotFoundError: If ``path`` does not exist, naming it.
        TensorFileError: If the file is not a valid safetensors file (for example a truncated
            file or a pickled checkpoint), naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"tensor file not found: {path}")
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError (not an OSError/ValueError)
        raise TensorFileError(_unreadable(path, exc)) from None
    if torch.device(device).type == "cpu":
        return tensors
    return {k: v.to(device) for k, v in tensors.items()}


def read_tensor_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored in a safetensors header (empty if none), without loading tensors.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        TensorFileError: If the file is not a valid safetensors file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"tensor file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:
        raise TensorFileError(_unreadable(path, exc)) from None


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state into tensors for a safetensors file and JSON for its header.

    Returns:
        ``({"optim/<param>/<name>": tensor}, {"param_groups": ..., "optim_scalars": ...})``; the
        inverse is :func:`optimizer_from_tensors`. Nothing needs pickling.
    """
    optim = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for i, entry in optim["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{i}/{key}"] = value
            else:
                scalars.setdefault(str(i), {})[key] = value
    return tensors, {"param_groups": optim["param_groups"], "optim_scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           header: dict[str, Any]) -> None:
    """Restore what :func:`optimizer_to_tensors` split (``tensors`` may hold other keys too).

    Raises:
        KeyError, ValueError, TypeError: If the header or the tensors do not describe this optimizer.
    """
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            i, name = key[len("optim/"):].split("/", 1)
            state.setdefault(int(i), {})[name] = value
    for i, extra in header["optim_scalars"].items():
        state.setdefault(int(i), {}).update(extra)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in header["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _unreadable(path: Path, exc: Exception) -> str:
    with open(path, "rb") as fh:
        head = fh.read(2)
    kind = " (it looks like a pickle / torch.save file, which kgzsl never unpickles)" \
        if head[:1] == b"\x80" or head == b"PK" else ""
    return (f"{path} is not a readable safetensors file{kind}: {exc}; it is truncated, corrupt or of another "
            "format: replace it with a good copy, or re-create it with the kgzsl command that wrote it")
