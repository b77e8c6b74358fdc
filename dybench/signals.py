"""SIGTERM is an interrupt like Ctrl-C.

`timeout`, Slurm and Kubernetes stop a job with SIGTERM; Python's default for it kills the process
at once, so nothing is saved and worker processes are orphaned. Every command installs
`terminate_as_interrupt()` once: SIGTERM then raises KeyboardInterrupt in the main thread, the same
code path that saves work on Ctrl-C runs, and the process exits 143 (128 + SIGTERM) instead of 130.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGINT_EXIT = 130
SIGTERM_EXIT = 143

_received: list[int] = []


def _raise_interrupt(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def note_signal(signum: int) -> None:
    """Record a signal a custom handler caught (e.g. the trainer's deferred stop), for the exit code."""
    _received.append(signum)


def interrupt_exit_code() -> int:
    """143 if the interrupt came from SIGTERM, 130 otherwise (Ctrl-C)."""
    return SIGTERM_EXIT if signal.SIGTERM in _received else SIGINT_EXIT

