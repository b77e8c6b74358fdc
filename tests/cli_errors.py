"""The contract every command keeps on bad input: a non-zero exit and one line on stderr that says
what is wrong, never a traceback."""

from __future__ import annotations

import subprocess


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message
