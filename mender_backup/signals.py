"""SIGTERM and SIGINT as `Terminated`, raised in the main thread.

Kubernetes sends SIGTERM at a Job's activeDeadlineSeconds and on eviction, a person
presses Ctrl-C: either way the run unwinds as a failure does (the partial archive goes,
this run's upload is aborted, the lock is released) and exits 143 or 130 with one line.
`Terminated` is a BaseException, so the `except Exception` of a retry loop, a listing
or a library cannot swallow it.

Python runs a handler in the main thread only, between bytecodes or when a blocking call
returns EINTR; waits on locks, queues, futures and sockets are all interrupted. Worker
threads never see the signal: the code that owns them stops them when the exception
passes (engine/artifacts.py, engine/load.py, engine/backup.py's readers).
"""

from __future__ import annotations

import signal

from .errors import Terminated

HANDLED = (signal.SIGTERM, signal.SIGINT)
_raised = False


def _raise(signum, frame) -> None:
    global _raised
    if _raised:
        # the first signal is unwinding: a second one would break off the cleanup it runs
        # (SIGKILL still ends the process; Kubernetes sends it after the grace period)
        return
    _raised = True
    raise Terminated(signum)


def install() -> None:
    """Route SIGTERM and SIGINT to `Terminated` (call from the main thread, first thing)."""
    global _raised
    _raised = False
    for s in HANDLED:
        signal.signal(s, _raise)
