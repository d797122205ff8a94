"""DataLoader workers killed by the signal that stops a job read as an interruption, not a crash."""

from __future__ import annotations

import signal

from kgzsl.utils.signals import interruption_of


def test_a_worker_killed_by_sigterm_or_sigint_is_an_interruption_with_its_signal():
    for name, signum in (("Terminated", signal.SIGTERM), ("Interrupt", signal.SIGINT)):
        stop = interruption_of(RuntimeError(f"DataLoader worker (pid 4321) is killed by signal: {name}. "))
        assert isinstance(stop, KeyboardInterrupt) and stop.signum == signum


def test_other_errors_stay_errors():
    assert interruption_of(RuntimeError("DataLoader worker (pid 4321) is killed by signal: Segmentation fault. ")) \
        is None
    assert interruption_of(RuntimeError("CUDA out of memory")) is None
    assert interruption_of(ValueError("DataLoader worker (pid 1) is killed by signal: Terminated.")) is None
