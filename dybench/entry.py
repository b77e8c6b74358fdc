"""The `dybench` console script and `python -m dybench.cli`: a light front door.

Importing the command line (typer, rich, every command module) takes about a second, and a Ctrl-C
or SIGTERM in that second used to print a KeyboardInterrupt traceback (or kill the process
outright), because `dybench.cli.main` installs the signal handling only once it runs. This module
imports nothing heavy: it makes SIGTERM an interrupt first (see dybench/signals.py), then imports
the command line, and an interrupt during that import exits 130/143 with one line.

`python -m dybench.cli` imports the package dybench/cli/__init__.py before its __main__.py runs,
so that package calls `guard_module_start` first thing when it is being started that way.
"""

from __future__ import annotations

import os
import signal
import sys
from types import TracebackType
from typing import NoReturn

from dybench.signals import interrupt_exit_code, terminate_as_interrupt

INTERRUPTED = "error: interrupted"


def main() -> None:
    """Run the command line; an interrupt while it is still being imported exits quietly."""
    terminate_as_interrupt()
    try:
        from dybench.cli import main as cli_main
    except KeyboardInterrupt:
        exit_interrupted()
    cli_main()


def exit_interrupted() -> NoReturn:
    """One plain line on stderr (rich may be half imported) and exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not interrupt the exit itself
        signal.signal(signum, signal.SIG_IGN)
    print(INTERRUPTED, file=sys.stderr, flush=True)
    raise SystemExit(interrupt_exit_code())


def guard_module_start() -> None:
    """For `python -m dybench.cli`: SIGTERM is an interrupt from now on, and an interrupt that escapes
    the package import (runpy re-raises it, so no try block can surround that import) is reported by
    the exception hook as one line and exit 130/143 instead of a traceback."""
    terminate_as_interrupt()
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, error, trace)
            return
        try:
            exit_interrupted()
        except SystemExit as exit_:
            # SystemExit raised inside the hook is ignored; leave at once with its code.
            os._exit(int(exit_.code or 0))

    sys.excepthook = hook
