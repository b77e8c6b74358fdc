"""A Ctrl-C or SIGTERM while the command line is still starting (Python importing typer, rich and
the command modules, about the first second) exits 130/143 with one line, never a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENTRY = [sys.executable, "-c", "from dybench.entry import main; main()"]
MODULE = [sys.executable, "-m", "dybench.cli"]
DELAYS_S = (0.05, 0.08, 0.1, 0.15, 0.2, 0.3)


def caught_signals(pid: int) -> int:
    """The process's mask of signals it has handlers for (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def wait_until_python_runs(process: subprocess.Popen) -> None:
    """Until the interpreter has installed its own SIGINT handler: from then on Python code runs
    (site, then our imports), so a signal is the program's to handle, not the operating system's."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if caught_signals(process.pid) & (1 << (signal.SIGINT - 1)):
                return
        except FileNotFoundError:
            return
        time.sleep(0.001)


def interrupted_run(command: list[str], signum: int, delay_s: float) -> tuple[int, str]:
    process = subprocess.Popen([*command, "tasks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_python_runs(process)
    time.sleep(delay_s)
    if process.poll() is None:
        process.send_signal(signum)
    _stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


@pytest.mark.parametrize("command", [ENTRY, MODULE], ids=["console-script", "python-m"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_while_starting_exits_with_one_line(command: list[str], signum: int) -> None:
    expected = 130 if signum == signal.SIGINT else 143
    interrupted = 0
    for delay_s in DELAYS_S:
        code, stderr = interrupted_run(command, signum, delay_s)
        assert "Traceback" not in stderr, f"after {delay_s} s:\n{stderr}"
        assert code in (0, expected), f"after {delay_s} s: exit {code}\n{stderr}"
        if code == expected:
            interrupted += 1
            assert stderr.strip().splitlines() == ["error: interrupted"], stderr
    assert interrupted, "no run was interrupted: every command finished before its signal"
