"""The `dybench` console script and `python -m dybench.cli`: a light front door.

Importing the command line (typer, rich, every command module) takes about a second, and a Ctrl-C
or SIGTERM in that second used to print a KeyboardInterrupt traceback (or kill the process
outright), because `dybench.cli.main` installs the signal handling only once it runs. This module
imports nothing heavy. While the command line is imported, SIGINT and SIGTERM are only noted (an
exception raised inside the import machinery can land in one of its callbacks, where Python prints
it and carries on); once the import is done a noted signal exits 130/143 with one line, and from
then on SIGTERM is an interrupt like Ctrl-C (see dybench/signals.py). A second signal during the
import stops it at once.

`python -m dybench.cli` imports the package dybench/cli/__init__.py before its __main__.py runs,
so that package calls `guard_module_start` first thing when it is being started that way.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType, TracebackType
from typing import NoReturn

from dybench.signals import interrupt_exit_code, note_signal, terminate_as_interrupt

INTERRUPTED = "error: interrupted"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_noted: list[int] = []


def main() -> None:
    """Run the command line; an interrupt while it is still being imported exits with one line."""
    note_interrupts()
    try:
        from dybench.cli import main as cli_main

        signal.signal(signal.SIGINT, signal.default_int_handler)
        terminate_as_interrupt()
        if _noted:
            exit_interrupted()
    except KeyboardInterrupt:
        exit_interrupted()
    try:
        cli_main()
    except KeyboardInterrupt:  # one that came before cli_main's own handling started
        exit_interrupted()


def note_interrupts() -> None:
    """Until the command line is loaded: note SIGINT and SIGTERM; a second one raises KeyboardInterrupt."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _note)


def _note(signum: int, frame: FrameType | None) -> None:
    note_signal(signum)
    if _noted:
        raise KeyboardInterrupt
    _noted.append(signum)


def exit_interrupted() -> NoReturn:
    """One plain line on stderr (rich may be half imported) and exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    for signum in STOP_SIGNALS:  # a further Ctrl-C must not interrupt the exit itself
        signal.signal(signum, signal.SIG_IGN)
    print(INTERRUPTED, file=sys.stderr, flush=True)
    raise SystemExit(interrupt_exit_code())


def guard_module_start() -> None:
    """For `python -m dybench.cli`: signals are noted from now on (`main`, run by __main__.py, acts
    on them), and a KeyboardInterrupt that escapes the package import (runpy re-raises it, so no try
    block can surround that import) is reported by the exception hook as one line and exit 130/143
    instead of a traceback."""
    note_interrupts()
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
