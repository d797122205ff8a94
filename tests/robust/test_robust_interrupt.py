"""Interruptions: atomic artifacts under SIGKILL, resumable training that ends where an uninterrupted run does."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import kgzsl.training.fit
from kgzsl.graph import GraphFormatError, KnowledgeGraph
from kgzsl.utils.io import load_tensors, read_tensor_metadata
from kgzsl.training.checkpoint import CheckpointError

from robust_helpers import toy_fit, torch_threads

TESTS = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), str(TESTS)])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(PACKAGE_ROOT))


WRITER = """
    import sys, time, torch
    torch.set_num_threads(1)
    import kgzsl.utils.io
    from safetensors.torch import save
    target, mode, i = sys.argv[1], sys.argv[2], 0
    if mode == "slow":  # the same bytes, written in 1 MB steps, so that a kill surely lands mid-file
        def slow_save_file(tensors, filename, metadata=None):
            data = save(tensors, metadata=metadata)
            with open(filename, "wb") as fh:
                for k in range(0, len(data), 1 << 20):
                    fh.write(data[k:k + (1 << 20)])
                    fh.flush()
                    print("partial", i, flush=True)
                    time.sleep(0.05)
        kgzsl.utils.io.save_file = slow_save_file
    while True:
        i += 1
        print("writing", i, flush=True)
        start = time.perf_counter()
        kgzsl.utils.io.save_tensors(target, {"x": torch.full((2_000_000,), float(i))}, metadata={"i": str(i)})
        print("done", i, time.perf_counter() - start, flush=True)
"""


@pytest.mark.parametrize("mode", ["slow", "real"])
def test_sigkill_during_save_tensors_leaves_old_or_new_file(tmp_path, mode):
    """kill -9 a process while it rewrites an 8 MB tensor file through kgzsl.utils.io.save_tensors.

    ``slow``: killed for sure in the middle of the temporary file; ``real``: the real writer,
    killed at a random moment of a write (a random fraction of the last write's duration).
    """
    rng = random.Random()
    target = tmp_path / "artifact.safetensors"
    proc = _child(WRITER, str(target), mode)
    try:
        done, seconds, writing = 0, 0.0, 0
        for line in proc.stdout:  # wait until one or two writes are complete and the next has started
            word, i, *rest = line.split()
            if word == "done":
                done, seconds = int(i), float(rest[0])
            elif word == "writing" and done >= 1 + rng.randrange(2) and mode == "real":
                writing = int(i)
                time.sleep(rng.uniform(0.0, seconds))
                break
            elif word == "partial" and int(i) >= 2 and mode == "slow":
                writing = int(i)
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and writing >= 2, proc.stderr.read()
    version = int(read_tensor_metadata(target)["i"])
    x = load_tensors(target)["x"]
    # the old artifact or a complete newer one (the writer may finish a write or two more before the
    # kill lands when the machine is busy) ...
    assert version >= writing - 1
    assert x.shape == (2_000_000,) and bool((x == float(version)).all())  # ... never part of one
    strays = [p for p in tmp_path.iterdir() if p != target]
    if mode == "slow":
        assert version == writing - 1 and len(strays) == 1  # the half-written temporary file is left over
    # left-over temporary files are hidden and never named like the artifact: ours are
    # .artifact.safetensors.XXXX.tmp, safetensors' own writer (itself atomic) may leave a .tmpXXXXXX
    assert all(p.name.startswith(".") and not p.name.endswith(".safetensors") for p in strays), strays
    assert sum(p.name.startswith(".artifact.safetensors.") and p.name.endswith(".tmp") for p in strays) <= 1
    assert list(tmp_path.glob("*.safetensors")) == [target]


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the ``call``-th training step raise KeyboardInterrupt (as Ctrl-C would)."""
    real = kgzsl.training.fit.regression_loss
    count = {"n": 0}

    def loss(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kgzsl.training.fit, "regression_loss", loss)


def test_fit_resume_is_bit_identical_with_dropout(tmp_path, monkeypatch):
    expected, full = toy_fit(epochs=60)
    ckpt = tmp_path / "ckpt.safetensors"
    _interrupt_at(monkeypatch, 40)
    with pytest.raises(KeyboardInterrupt):
        toy_fit(epochs=60, checkpoint_path=ckpt)
    monkeypatch.undo()
    assert ckpt.is_file() and read_tensor_metadata(ckpt)["kgzsl_checkpoint"] == "1"
    rows, resumed = toy_fit(epochs=60, checkpoint_path=ckpt, resume=True)
    assert resumed.resumed_from == 35  # the last multiple of every=7 before the interruption at epoch 40
    assert torch.equal(rows, expected)
    assert resumed.train_loss == full.train_loss and resumed.val_cosine == full.val_cosine
    assert (resumed.best_epoch, resumed.epochs_run) == (full.best_epoch, full.epochs_run)


def test_resume_depends_on_the_restored_random_state(tmp_path, monkeypatch):
    """Sensitivity check: with dropout, a resume that did not restore the RNG would differ."""
    expected, _ = toy_fit(epochs=30)
    ckpt = tmp_path / "ckpt.safetensors"
    _interrupt_at(monkeypatch, 20)
    with pytest.raises(KeyboardInterrupt):
        toy_fit(epochs=30, checkpoint_path=ckpt)
    monkeypatch.undo()
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    rows, _ = toy_fit(epochs=30, checkpoint_path=ckpt, resume=True)
    assert not torch.equal(rows, expected)


def test_resume_refuses_a_checkpoint_of_another_setup(tmp_path, monkeypatch, caplog):
    ckpt = tmp_path / "ckpt.safetensors"
    _interrupt_at(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        toy_fit(epochs=20, checkpoint_path=ckpt, every=5)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"nodes: a graph with another node count.*delete .*ckpt"):
        toy_fit(epochs=20, checkpoint_path=ckpt, resume=True, num_nodes=45)
    with pytest.raises(CheckpointError, match="optimizer: other optimiser settings"):
        toy_fit(epochs=20, checkpoint_path=ckpt, resume=True, lr=0.5)
    # no checkpoint at all: a warning, then training from the start gives the uninterrupted result
    fresh = tmp_path / "none.safetensors"
    rows, result = toy_fit(epochs=20, checkpoint_path=fresh, resume=True, every=5)
    assert "no checkpoint" in caplog.text and result.resumed_from == 0
    assert torch.equal(rows, toy_fit(epochs=20)[0])


TRAINER = """
    import sys, time, torch
    torch.set_num_threads(1)
    import kgzsl.training.fit
    from robust_helpers import toy_fit
    real = kgzsl.training.fit.regression_loss
    def slow_loss(*args, **kwargs):  # slow the child down so that the kill lands mid-training
        time.sleep(0.004)
        return real(*args, **kwargs)
    kgzsl.training.fit.regression_loss = slow_loss
    toy_fit(epochs=200, checkpoint_path=sys.argv[1], every=3)
    print("finished", flush=True)
"""


def test_training_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path):
    ckpt = tmp_path / "train.safetensors"
    proc = _child(TRAINER, str(ckpt))
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 0.5))
        assert proc.poll() is None, proc.stderr.read()  # still training: the kill interrupts it
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    epoch = int(json.loads(read_tensor_metadata(ckpt)["state"])["epoch"])
    assert 3 <= epoch < 200 and epoch % 3 == 0
    rows, resumed = toy_fit(epochs=200, checkpoint_path=ckpt, resume=True, every=3)
    expected, full = toy_fit(epochs=200)
    assert resumed.resumed_from == epoch
    assert torch.equal(rows, expected) and resumed.train_loss == full.train_loss


def test_interrupted_graph_save_never_loads_as_a_mix(tmp_path, monkeypatch, toy):
    import kgzsl.graph.graph_folder as kg

    toy.save(tmp_path / "g")
    changed = KnowledgeGraph(wnids=toy.wnids, names=toy.names, lemmas=[[*ls, "extra"] for ls in toy.lemmas],
                             glosses=toy.glosses, edges=toy.edges[:-1])
    real = kg.write_text
    calls = {"n": 0}

    def dies_after_first(path, text):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after nodes.tsv was replaced, before edges.tsv
        real(path, text)

    monkeypatch.setattr(kg, "write_text", dies_after_first)
    with pytest.raises(KeyboardInterrupt):
        changed.save(tmp_path / "g")
    with pytest.raises(GraphFormatError, match="no manifest.json.*kgzsl build-graph"):
        KnowledgeGraph.load(tmp_path / "g")
    monkeypatch.undo()
    changed.save(tmp_path / "g")
    assert KnowledgeGraph.load(tmp_path / "g").lemmas[0] == ["entity", "extra"]


def test_atomic_writes_keep_normal_file_permissions(tmp_path):
    """The temporary file is private (mkstemp); the artifact must not stay so."""
    from kgzsl.utils.io import _umask, write_text

    write_text(tmp_path / "new.txt", "a")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()
    (tmp_path / "new.txt").chmod(0o640)
    write_text(tmp_path / "new.txt", "b")  # replacing a file keeps its permissions
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640 and (tmp_path / "new.txt").read_text() == "b"
