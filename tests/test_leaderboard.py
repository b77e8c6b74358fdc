"""Leaderboards: CSV contract, replacement by key, byte-identical republishing, and the renderings
(a Markdown table, an HTML page that Chromium opens without console errors, a real PNG chart)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dybench.cli import app
from dybench.data import Dataset
from dybench.leaderboard import publish, read_board
from dybench.metrics import score_predictions
from dybench.prompts import LETTERED
from dybench.schema import Item, Prediction
from dybench.atomic import write_json_atomic
from dybench.store import DatasetRef, RunConfig

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def make_dataset() -> Dataset:
    items = []
    for category, n_options in (("moving_direction", 4), ("event_sequence", 2)):
        for pair in range(6):
            first = "A" if pair % 2 else "B"
            second = "B" if first == "A" else "A"
            for transform, answer in (("original", first), ("hflip", second)):
                items.append(Item(id=f"{category}-{pair}-{transform}", pair_id=f"{category}-{pair}", task=category,
                                  category=category, video="v.mp4", question="q?",
                                  options=["left", "right", "up", "down"][:n_options], answer=answer, transform=transform))
    return Dataset("unit-set", "synthetic", Path("."), items, "fp0")


def write_run(root: Path, model: str, right_share: float, created: str = "2026-11-01T10:00:00+00:00") -> Path:
    """A run directory as `dybench eval` leaves it (run.json, predictions.jsonl, scores.json)."""
    dataset = make_dataset()
    cutoff = int(len(dataset.items) * right_share)
    predictions = [Prediction(id=i.id, key=f"x/{i.id}", output="?", pred=i.answer if n < cutoff else "A")
                   for n, i in enumerate(dataset.items)]
    run_dir = root / model.replace(":", "-")
    config = RunConfig(model=model, backend="baseline", prompt=LETTERED,
                       dataset=DatasetRef(spec="/data/unit-set", name="unit-set", family="synthetic", n_items=24),
                       dataset_fingerprint="fp0", versions={"dybench": "0.1.0"}, created=created, updated=created).sealed()
    write_json_atomic(run_dir / "run.json", config.model_dump(mode="json"))
    (run_dir / "predictions.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in predictions))
    write_json_atomic(run_dir / "scores.json", score_predictions(dataset, predictions))
    return run_dir


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    return [write_run(tmp_path / "runs", "model-good", 1.0), write_run(tmp_path / "runs", "model-half", 0.5),
            write_run(tmp_path / "runs", "baseline:constant", 0.0)]


def test_csv_has_the_contract_columns_and_one_row_per_run(runs, tmp_path):
    out = tmp_path / "boards" / "unit.csv"
    publish(runs, out)
    frame = pd.read_csv(out)
    contract = ["model", "dataset", "acc", "p_acc", "p_acc_event_sequence", "p_acc_moving_direction", "n_pairs",
                "date", "dybench_version", "config_hash"]
    assert list(frame.columns[: len(contract)]) == contract
    assert {"source", "p_acc_lo", "p_acc_hi", "acc_lo", "acc_hi", "provenance"} <= set(frame.columns)
    assert list(frame["model"]) == ["model-good", "model-half", "baseline:constant"]  # best P-Acc first
    good = frame.iloc[0]
    assert good["p_acc"] == 1.0 and good["n_pairs"] == 12 and good["date"] == "2026-11-01"
    assert good["source"] == "measured" and good["dybench_version"] == "0.1.0"
    assert frame.loc[frame["model"] == "baseline:constant", "p_acc"].item() == 0.0
    assert all((frame["p_acc_lo"] <= frame["p_acc"]) & (frame["p_acc"] <= frame["p_acc_hi"]))


def test_publishing_twice_writes_the_same_bytes_and_replaces_rows_by_key(runs, tmp_path):
    out = tmp_path / "unit.csv"
    publish(runs, out)
    first = {suffix: out.with_suffix(suffix).read_bytes() for suffix in (".csv", ".md", ".html", ".png")}
    publish(runs, out)
    assert {suffix: out.with_suffix(suffix).read_bytes() for suffix in first} == first
    publish(runs[:1], out)  # one run again: still three rows, none duplicated
    assert len(read_board(out)) == 3 and out.read_bytes() == first[".csv"]
    # a new run of the same model with the same settings replaces its row
    again = write_run(tmp_path / "rerun", "model-half", 0.75)
    publish([again], out)
    board = read_board(out)
    assert len(board) == 3
    assert board.loc[board["model"] == "model-half", "acc"].item() == round(21 / 24, 6)  # 18 right + 3 of 6 "A"s


def test_reported_rows_are_kept_beside_measured_ones(runs, tmp_path):
    out = tmp_path / "with-paper.csv"
    publish(runs, out, include=[REPO / "leaderboards" / "dybench-reported.csv"])
    board = read_board(out)
    reported = board[board["source"] == "reported"]
    assert len(reported) == 30 and len(board) == 33
    crpo = reported[(reported["model"] == "Qwen3-VL-8B + CRPO") & (reported["dataset"] == "dybench")]
    assert crpo["p_acc"].item() == 0.581 and "2605.21988" in crpo["provenance"].item()
    timeblind = reported[(reported["model"] == "Qwen3-VL-8B + CRPO") & (reported["dataset"] == "timeblind")]
    assert timeblind["i_acc"].item() == 0.36


def test_markdown_lists_every_row(runs, tmp_path):
    out = tmp_path / "unit.csv"
    publish(runs, out)
    text = out.with_suffix(".md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| model | dataset")]
    assert len(rows) == 3 and rows[0].startswith("| model-good | unit-set | measured | 100.0 | 100.0 |")


def test_png_is_a_real_chart(runs, tmp_path):
    out = tmp_path / "unit.csv"
    publish(runs, out)
    data = out.with_suffix(".png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 600 and height >= 400
    from matplotlib.image import imread

    pixels = imread(out.with_suffix(".png"))
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 10  # not a blank canvas


def test_cli_publish_prints_the_table_and_refuses_a_folder_that_is_not_a_run(runs, tmp_path):
    out = tmp_path / "cli.csv"
    result = CliRunner().invoke(app, ["leaderboard", "publish", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "model-good" in result.output and out.is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["leaderboard", "publish", str(empty), "--out", str(out)])
    assert result.exit_code != 0 and "neither scores.json nor run.json" in str(result.exception)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (/usr/bin/chromium absent; "
                    "scripts/install.sh installs it with apt-get where it runs as root)")
def test_html_opens_in_headless_chromium_without_console_errors_and_shows_every_row(runs, tmp_path):
    out = tmp_path / "page.csv"
    publish(runs, out, include=[REPO / "leaderboards" / "dybench-reported.csv"])
    board = read_board(out)
    page = out.with_suffix(".html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.read_text())  # self-contained
    profile = tmp_path / "chromium-profile"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
               f"{page.as_uri()}#sort=p_acc"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    dom = result.stdout
    assert 'data-status="ok"' in dom
    assert f'data-rows="{len(board)}"' in dom
    shown = re.findall(r'<tr class="row[^"]*"[^>]*><td class="text">([^<]*)</td><td class="text">([^<]*)</td>', dom)
    assert sorted(shown) == sorted(zip(board["model"], board["dataset"]))
    # the page sorted itself by P-Acc (descending, blanks last), as asked in the URL
    p_acc_cells = re.findall(r'<tr class="row[^"]*"[^>]*>(?:<td[^>]*>.*?</td>){4}<td data-sort="([^"]*)"', dom)
    numbers = [float(v) for v in p_acc_cells if v]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == board["p_acc"].notna().sum()
    assert p_acc_cells[len(numbers):] == [""] * (len(board) - len(numbers))
