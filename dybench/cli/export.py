"""`dybench export`: write a built dataset in the layouts other tools read (Hugging Face datasets,
lmms-eval). One subcommand per target; the library modules do the writing."""

from __future__ import annotations

import typer

export_app = typer.Typer(
    help="Write a dataset in the layouts other tools read: `hf` (Hugging Face datasets), `lmms-eval` (a task folder).",
    no_args_is_help=True,
)
