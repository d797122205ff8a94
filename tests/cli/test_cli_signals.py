"""SIGTERM (``timeout``, ``docker stop``, systemd, Slurm) takes Ctrl-C's way out of every ``kgzsl`` command:
one line naming the signal, exit code 143, no temporary file of an atomic write left behind."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kgzsl.cli import main

from conftest import requires_wordnet

TESTS = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = TESTS.parent


def _kgzsl(*args: str, prelude: str = "") -> subprocess.Popen:
    """``python -m kgzsl ARGS`` in a child process (run by runpy, as ``-m`` does, after ``prelude``)."""
    code = textwrap.dedent(prelude) + "\nimport runpy, sys\nsys.argv[0] = 'kgzsl'\n" \
        "runpy.run_module('kgzsl', run_name='__main__', alter_sys=True)\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PACKAGE_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(PACKAGE_ROOT))


def _wait_for(condition, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the command ended (or hung) before the signal: {proc.returncode}\n{out}\n{err}")
        time.sleep(0.02)


def _terminate(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=60)
    finally:
        proc.kill()


def _strays(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


# the atomic write of concepts.yaml stops right before it would rename its complete temporary file
BLOCKING_WRITE = """
    import os, sys, time
    real_fsync = os.fsync

    def fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.startswith(".concepts.yaml.") and name.endswith(".tmp"):
            print("writing", name, flush=True)
            time.sleep(120)
        real_fsync(fd)

    os.fsync = fsync
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_sigterm_during_an_atomic_write_removes_its_temporary_file(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    proc = _kgzsl("-q", "add-concept", str(run), "Burmese cat", "--device", "cpu", prelude=BLOCKING_WRITE)
    line = proc.stdout.readline()  # blocks until the temporary file is written and waits to be renamed
    assert line.startswith("writing .concepts.yaml."), (line, proc.poll())
    assert len(_strays(run)) == 1  # there it is, complete
    out, err = _terminate(proc)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "kgzsl add-concept: interrupted by SIGTERM", err
    assert "Traceback" not in err
    assert _strays(run) == [] and not (run / "concepts.yaml").exists()  # the old state: no concept added


def test_sigterm_stops_train_as_ctrl_c_does(tiny_run, tmp_path):
    """A real training run: the checkpoint stays for --resume, nothing half-written stays."""
    root, out = tiny_run.parent, tmp_path / "run"
    proc = _kgzsl("train", f"graph.path={root / 'graph'}", f"graph.wnids={root / 'tiny.txt'}", "name=sigterm",
                  "features.encoder=wordllama", "model.name=dgp", "model.hidden_channels=[64]", "train.epochs=100000",
                  "train.checkpoint_every=1", "train.patience=100000", "train.device=cpu", "--out", str(out))
    _wait_for(lambda: (out / "checkpoint.safetensors").exists(), proc)
    time.sleep(0.3)  # a few epochs more: each writes the checkpoint again
    _, err = _terminate(proc)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == \
        "kgzsl train: interrupted by SIGTERM; continue with the same command and --resume", err
    assert "Traceback" not in err
    assert (out / "checkpoint.safetensors").is_file() and not (out / "run.json").exists()
    assert _strays(out) == []


def test_sigterm_lets_serve_shut_down_gracefully(tiny_run):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = _kgzsl("serve", str(tiny_run), "--port", str(port), "--device", "cpu")

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    _wait_for(listening, proc)
    _, err = _terminate(proc)
    assert proc.returncode == 143, err
    assert "Application shutdown complete" in err and "Finished server process" in err  # uvicorn's own ending
    assert err.strip().splitlines()[-1] == "kgzsl serve: interrupted by SIGTERM", err


def test_ctrl_c_and_sigterm_in_process(monkeypatch, capsys):
    """Exit codes and lines; the handler exists only while main() runs (importing kgzsl installs none)."""
    import kgzsl.tasks.demo

    def ctrl_c(**kwargs):
        raise KeyboardInterrupt

    def sigterm(**kwargs):
        assert callable(signal.getsignal(signal.SIGTERM))  # else the signal would end pytest
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the signal interrupts this
        raise AssertionError("not interrupted")

    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    monkeypatch.setattr(kgzsl.tasks.demo, "run_demo", ctrl_c)
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == "kgzsl demo: interrupted by SIGINT\n"
    monkeypatch.setattr(kgzsl.tasks.demo, "run_demo", sigterm)
    start = time.monotonic()
    assert main(["demo"]) == 143
    assert time.monotonic() - start < 5
    assert capsys.readouterr().err == "kgzsl demo: interrupted by SIGTERM\n"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_a_sigterm_handler_set_by_the_caller_is_kept(monkeypatch):
    """A program that calls main() and handles SIGTERM itself keeps its handler."""
    import kgzsl.tasks.demo

    def mine(signum, frame):
        pass

    seen = []
    monkeypatch.setattr(kgzsl.tasks.demo, "run_demo", lambda **kwargs: seen.append(signal.getsignal(signal.SIGTERM)))
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["demo"]) == 0
        assert seen == [mine] and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_finetune_interrupted_says_so_on_rank_0_only(monkeypatch, capsys, tmp_path, rank):
    """Under torchrun every process is interrupted; rank 0 prints the line (with --resume), the others end quietly."""
    import kgzsl.tasks.finetune

    terminated = KeyboardInterrupt()
    terminated.signum = signal.SIGTERM  # as the kgzsl command raises it on SIGTERM
    monkeypatch.setenv("RANK", rank)
    level = logging.getLogger().level  # the other ranks lower the log level of the process
    try:
        for exc, code, name in ((KeyboardInterrupt(), 130, "SIGINT"), (terminated, 143, "SIGTERM")):
            def interrupted(*args, **kwargs):
                raise exc

            monkeypatch.setattr(kgzsl.tasks.finetune, "finetune_run", interrupted)
            assert main(["finetune", str(tmp_path), "--data", str(tmp_path)]) == code
            expected = f"kgzsl finetune: interrupted by {name}; continue with the same command and --resume\n"
            assert capsys.readouterr().err == (expected if rank == "0" else "")
    finally:
        logging.getLogger().setLevel(level)
