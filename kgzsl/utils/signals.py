"""An interruption that reaches the DataLoader's workers first, told apart from a crash.

``timeout``, systemd and a shell's job control signal a whole process group: the DataLoader's
worker processes die of the SIGTERM (or Ctrl-C's SIGINT) too, and the main process may learn of it
from PyTorch as a ``RuntimeError`` ("DataLoader worker (pid 123) is killed by signal: Terminated.")
before its own handler runs. :func:`interruption_of` turns that error into the
``KeyboardInterrupt`` the rest of kgzsl takes as an interruption (with ``signum``, as the
``kgzsl`` command's SIGTERM handler raises it), so that work done so far is kept and the command
says "interrupted by SIGTERM" instead of printing a traceback.

Example:
    >>> try:
    ...     batch = next(batches)
    ... except RuntimeError as exc:
    ...     raise interruption_of(exc) or exc
"""

from __future__ import annotations

import re
import signal

__all__ = ["interruption_of"]

_KILLED = re.compile(r"DataLoader worker \(pid[^)]*\) is killed by signal: (.+?)\.?\s*$")
_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def interruption_of(exc: BaseException) -> KeyboardInterrupt | None:
    """A ``KeyboardInterrupt`` carrying ``signum`` when ``exc`` says a DataLoader worker was killed by
    SIGTERM, SIGINT or SIGHUP (signals that stop a job); None for any other error."""
    found = _KILLED.search(str(exc)) if isinstance(exc, RuntimeError) else None
    if found is None:
        return None
    name = found.group(1).strip()
    for signum in _STOPS:
        if name in (signal.strsignal(signum), signum.name):
            interruption = KeyboardInterrupt()
            interruption.signum = int(signum)  # type: ignore[attr-defined]
            return interruption
    return None
