"""Run a command, send it a real signal at a chosen moment, and check how it stopped: the exit code
(130 for SIGINT, 143 for SIGTERM), no traceback, and no process of the command left running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

PAUSE_ENV = "DYBENCH_TEST_PAUSE_AT"
PAUSE_PLUGIN = str(Path(__file__).parent / "plugins" / "pause_points.py")
"""`PHASE:SECONDS` for the pause_points plugin (tests/plugins/pause_points.py), which `pause=` loads."""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def interrupt(cmd: list[str], signum: int, when: Callable[[], bool], what: str, pause: str | None = None) -> str:
    """Start `cmd`, send `signum` once `when()` holds; return the last line of stderr after checking
    the exit code, that there is no traceback and that no process of the command's session is left."""
    env = os.environ.copy()
    if pause:
        env[PAUSE_ENV] = pause
        env["DYBENCH_PLUGINS"] = ",".join(filter(None, [env.get("DYBENCH_PLUGINS"), PAUSE_PLUGIN]))
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        wait_for(lambda: when() or process.poll() is not None, what)
        assert process.poll() is None, f"finished before {what}: {process.stderr.read()[-2000:]}"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    expected = 143 if signum == signal.SIGTERM else 130
    assert process.returncode == expected, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert_no_survivors(process.pid)
    return stderr.strip().splitlines()[-1]  # the one-line message (transformers' loading bars come before it)


def assert_no_survivors(session: int) -> None:
    try:
        os.killpg(session, 0)
    except ProcessLookupError:
        return
    raise AssertionError("a process of the interrupted command is still running")
