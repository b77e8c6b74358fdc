"""Advisory file locks (fcntl.flock) for read-modify-write of files and folders that several
processes may write at once: a leaderboard CSV, a run directory.

The lock lives in its own file beside (or inside) what it protects, so the protected files can
still be replaced atomically by rename. The holder writes its pid into the lock file, so a process
that finds it busy can say who holds it. The operating system drops the lock when the holder exits,
however it exits (SIGKILL included): a stale lock file never blocks anyone. Lock files are left in
place; deleting one while another process waits on it would let two processes hold "the" lock.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from dybench.errors import DyBenchError


class LockBusy(DyBenchError):
    """Raised by `file_lock(..., wait=False)` when another process holds the lock."""

    def __init__(self, path: Path, holder_pid: int | None, message: str | None = None):
        self.path = path
        self.holder_pid = holder_pid
        super().__init__(message or f"{path} is held by another process ({describe_holder(holder_pid)})")


def describe_holder(pid: int | None) -> str:
    return f"pid {pid}" if pid else "pid unknown"


def _holder_pid(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextmanager
def file_lock(path: Path, wait: bool = True,
              busy_message: Callable[[int | None], str] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the `with` block.

    `wait=True` blocks until the lock is free (Ctrl-C still interrupts the wait); `wait=False`
    raises LockBusy at once, naming the holder's pid where it is known (`busy_message(pid)`, if
    given, is its message)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            pid = _holder_pid(descriptor)
            raise LockBusy(path, pid, busy_message(pid) if busy_message else None) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)  # while still held: a reader never sees a pid that has let go
    finally:
        os.close(descriptor)  # closing the last descriptor releases the lock


def lock_path_for(path: Path) -> Path:
    """The lock file beside `path`: `DIR/.NAME.lock`."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")
