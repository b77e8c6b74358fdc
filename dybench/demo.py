"""The end-to-end demo: build a small synthetic test set, evaluate four reference models, score
them and publish `leaderboards/demo.*`. No downloads, a few minutes on two CPU cores.

The four models bracket what P-Acc measures: `baseline:constant` (one answer for everything: P-Acc
is exactly 0), `baseline:random` (chance), `baseline:motion` (reads motion from pixels: near the
ceiling on synthetic clips) and `tiny-random-qwen3-vl` (a real Qwen3-VL architecture with random
weights, run through transformers: the full model path, answers are noise).

Rerunning reuses finished work: the build resumes, and a run whose every item is answered on the
same data is not evaluated again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from dybench.escaping import rich_text

DEMO_MODELS = ("baseline:constant", "baseline:random", "baseline:motion", "tiny-random-qwen3-vl")
DATA_NAME = "synthetic-test"

NEXT_STEPS = """[bold]Next:[/]
  • a real model on a GPU machine (pip install -e ".\\[vllm]"):
      dybench eval --model qwen3-vl-8b --data {data} --out runs/qwen3-vl-8b
  • a bigger synthetic set:   dybench build-pairs --out data/test --pairs-per-task 100
  • TimeBlind (download its data.jsonl and videos yourself):
      dybench eval --model qwen3-vl-8b --data timeblind:TimeBlind/data.jsonl --out runs/tb-qwen3-vl-8b
  • the official DyBench release:  --data dybench:PATH/TO/DyBench
  • train with CRPO on counterfactual pairs:
      dybench build-pairs --out data/train --split train --pairs-per-task 200
      dybench train-crpo --model PATH --data data/train --out ckpt/crpo
  • publish:  dybench leaderboard publish runs/* --out leaderboards/mine.csv --include leaderboards/dybench-reported.csv"""


def run_slug(model: str) -> str:
    return model.replace(":", "-").replace("/", "--")


def _finished(run_dir: Path, fingerprint: str) -> bool:
    """Whether `run_dir` already holds a complete run on the data with this fingerprint."""
    try:
        run = json.loads((run_dir / "run.json").read_text())
        scores = json.loads((run_dir / "scores.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return run.get("dataset_fingerprint") == fingerprint and scores.get("n_missing") == 0


def run_demo(
    out: Path = Path("demo"),
    leaderboard: Path = Path("leaderboards/demo.csv"),
    pairs_per_task: int = 6,
    seed: int = 0,
    models: tuple[str, ...] = DEMO_MODELS,
    progress: bool = True,
    console: Console | None = None,
) -> pd.DataFrame:
    """Build, evaluate, score and publish; return the leaderboard table."""
    from dybench.build import build_synthetic
    from dybench.families import load_data
    from dybench.evaluate import run_eval
    from dybench.leaderboard import publish

    console = console or Console()
    started = time.monotonic()
    data = Path(out) / DATA_NAME
    console.rule("[bold]1/3 build a synthetic test set")
    build_synthetic(data, pairs_per_task=pairs_per_task, seed=seed, split="test", progress=progress)
    dataset = load_data(str(data))
    console.print(f"{len(dataset.items)} clips, {len({i.pair_id for i in dataset.items})} pairs in {rich_text(data)}")

    console.rule("[bold]2/3 evaluate")
    run_dirs = []
    for model in models:
        run_dir = Path(out) / "runs" / run_slug(model)
        run_dirs.append(run_dir)
        if _finished(run_dir, dataset.fingerprint):
            console.print(rich_text(f"{model}: finished earlier, reusing {run_dir}"))
            continue
        console.print(rich_text(f"{model} ..."))
        scores: dict[str, Any] = run_eval(model, str(data), run_dir, progress=progress)
        console.print(f"{rich_text(model)}: Acc {100 * scores['acc']:.1f}%  P-Acc {100 * scores['p_acc']:.1f}%")

    console.rule("[bold]3/3 score and publish")
    # fresh: the demo's board shows this demo's runs only, never rows left by older settings
    frame = publish(run_dirs, Path(leaderboard), title="DyBench demo (synthetic test set)", fresh=True)
    from dybench.tables import leaderboard_table

    console.print(leaderboard_table(frame[frame["dataset"] == DATA_NAME], "DyBench demo: synthetic test set"))
    console.print(rich_text(f"wrote {leaderboard} and {Path(leaderboard).with_suffix('')}.md/.html/.png ")
                  + f"in {time.monotonic() - started:.0f}s")
    console.print(
        "Read it: baseline:constant gives one answer to both clips of every pair, so its P-Acc is 0; "
        "baseline:random is chance; baseline:motion reads motion from pixels; tiny-random-qwen3-vl "
        "runs a real Qwen3-VL architecture with random weights (noise)."
    )
    console.print(NEXT_STEPS.format(data=rich_text(data)))
    return frame
