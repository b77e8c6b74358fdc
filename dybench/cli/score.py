"""`dybench score`: (re)compute scores.json for a run, or score predictions made elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dybench.cli.common import console, fail
from dybench.escaping import rich_text
from dybench.tables import scores_summary, scores_table


def score_command(
    run_dir: Optional[Path] = typer.Argument(None, help="A run directory from `dybench eval`: rewrites RUN_DIR/scores.json."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset of predictions made elsewhere: a built folder, "
                                       "dybench:PATH, timeblind:PATH/data.jsonl or hf:DIR."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Predictions made elsewhere: our "
                                               "predictions.jsonl rows (id, output/pred), TimeBlind's JSON list "
                                               "(index, model_output) or an lmms-eval sample log (samples_TASK.jsonl "
                                               "of a task from `dybench export lmms-eval`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for scores.json (with --predictions)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name recorded with external predictions "
                                        "(default: the predictions file's name)."),
) -> None:
    """Compute Acc, P-Acc (per category and task, with 95% bootstrap intervals) and, on TimeBlind,
    Acc / Q-Acc / V-Acc / I-Acc exactly as TimeBlind's reference scorer does."""
    if run_dir is not None:
        if data or predictions or out:
            fail("give either RUN_DIR, or --data with --predictions and --out, not both")
        from dybench.evaluate import score_run
        from dybench.store import read_run_config

        scores, missing = score_run(run_dir)
        title = f"{read_run_config(run_dir).model} on {scores['dataset']}"
        where = run_dir / "scores.json"
    else:
        if not (data and predictions and out):
            fail("give RUN_DIR, or all of --data, --predictions and --out (see `dybench score --help`)")
        from dybench.external_predictions import score_prediction_file

        scores = score_prediction_file(data, predictions, out, model=model)
        title = f"{scores['source']['model']} on {scores['dataset']}"
        where = out / "scores.json"
    console.print(scores_table(scores, title))
    for line in scores_summary(scores):
        console.print(rich_text(line), highlight=False)
    console.print(rich_text(f"wrote {where}"), highlight=False)
