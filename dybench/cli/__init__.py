"""The `dybench` command line: a thin typer app. Each command module parses options, calls the
library and prints with rich; the library does the work and is importable on its own."""

from __future__ import annotations

import sys

if sys.argv[:1] == ["-m"]:  # `python -m dybench.cli` is importing this package (see dybench/entry.py)
    from dybench.entry import guard_module_start

    guard_module_start()

import typer

from dybench.plugins import load_plugins_or_exit

load_plugins_or_exit()  # before the command modules: their --help lists registry names

from dybench.cli.build import build_pairs_command
from dybench.cli.common import console, fail
from dybench.cli.eval import eval_command, merge_command
from dybench.cli.export import export_app
from dybench.cli.lab import lab_app
from dybench.cli.models import list_models_command
from dybench.cli.probe import probe_command
from dybench.cli.demo import demo_command
from dybench.cli.doctor import doctor_command
from dybench.cli.leaderboard import leaderboard_app
from dybench.cli.score import score_command
from dybench.cli.tasks import list_tasks
from dybench.cli.train import train_command
from dybench.errors import DyBenchError
from dybench.signals import interrupt_exit_code, terminate_as_interrupt

app = typer.Typer(
    name="dybench",
    help="Does my video LLM actually watch the video? Counterfactual pairs, evaluation and CRPO training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Does my video LLM actually watch the video? Run a command with --help for its options."""


app.command("tasks")(list_tasks)
app.command("build-pairs")(build_pairs_command)
app.command("eval")(eval_command)
app.command("merge")(merge_command)
app.command("probe")(probe_command)
app.command("models")(list_models_command)
app.command("train-crpo")(train_command)
app.command("score")(score_command)
app.add_typer(leaderboard_app, name="leaderboard")
app.add_typer(lab_app, name="lab")
app.add_typer(export_app, name="export")
app.command("demo")(demo_command)
app.command("doctor")(doctor_command)


def main() -> None:
    """Console entry point. A DyBenchError or an OS error (disk full, permission denied) becomes one
    red line and exit code 2, no traceback; SIGTERM is handled like Ctrl-C (see dybench.signals), and
    an interrupt that escaped a command's own handler still exits 130/143 without a traceback."""
    terminate_as_interrupt()
    try:
        app()
    except DyBenchError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=interrupt_exit_code())
    except OSError as exc:
        fail(os_error_message(exc))


def os_error_message(exc: OSError) -> str:
    """`[Errno 28] No space left on device: 'x'` as `x: no space left on device`."""
    where = f"{exc.filename}: " if exc.filename else ""
    reason = (exc.strerror or str(exc)).lower()
    return f"{where}{reason}"


__all__ = ["app", "main", "console"]
