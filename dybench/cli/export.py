"""`dybench export`: write a built dataset in the layouts other tools read (Hugging Face datasets,
lmms-eval). One subcommand per target; the library modules do the writing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dybench.cli.common import console
from dybench.escaping import rich_text

export_app = typer.Typer(
    help="Write a dataset in the layouts other tools read: `hf` (Hugging Face datasets), `lmms-eval` (a task folder).",
    no_args_is_help=True,
)


@export_app.command("hf")
def export_hf_command(
    data: str = typer.Argument(..., help="The dataset: a folder from `dybench build-pairs`, dybench:PATH, "
                               "timeblind:PATH/data.jsonl or hf:DIR."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (metadata.jsonl, videos/, README.md); "
                             "new, empty, or an earlier export of the same data."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Also upload the folder to this hub "
                                              "dataset repository (OWNER/NAME), with the token in HF_TOKEN."),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repository private."),
) -> None:
    """Write DATA as a Hugging Face `datasets` video folder: `load_dataset(OUT, split=...)` reads it,
    with the build's split, and `dybench eval --data hf:OUT` evaluates it like the source."""
    from dybench.families import load_data
    from dybench.hf_export import check_repo_id, export_hf, push_to_hub as push

    if push_to_hub:
        check_repo_id(push_to_hub)
    dataset = load_data(data)
    summary = export_hf(dataset, data, out)
    console.print(rich_text(f"exported {summary.n_items} items ({summary.n_clips} clips, "
                            f"{summary.bytes_copied / 1e6:.1f} MB) as split `{summary.split}` to {summary.out}"),
                  highlight=False)
    if push_to_hub:
        url = push(summary.out, push_to_hub, private=private)
        console.print(rich_text(f"pushed to {url}"), highlight=False)


@export_app.command("lmms-eval")
def lmms_eval_command(
    data: str = typer.Argument(..., help="The dataset: a built folder or dybench:PATH (lettered options)."),
    out: Path = typer.Option(..., "--out", "-o", help="Task folder to write (NAME.yaml, utils.py, NAME.jsonl); "
                             "load it with `lmms-eval --include_path OUT --tasks NAME`."),
    task: str = typer.Option("dybench", "--task", help="lmms-eval task name."),
) -> None:
    """An lmms-eval task whose Acc and P-Acc equal `dybench score`'s; score its sample logs with
    `dybench score --data DATA --predictions samples_NAME.jsonl --out DIR`."""
    from dybench.lmms_eval_export import export_lmms_eval

    yaml_path = export_lmms_eval(data, out, task=task)
    console.print(rich_text(f"wrote {yaml_path.parent} (lmms-eval task {task!r}: --include_path {yaml_path.parent})"),
                  highlight=False)
