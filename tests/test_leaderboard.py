"""Leaderboards: CSV contract, replacement by key, byte-identical republishing, and the renderings
(a Markdown table, an HTML page that Chromium opens without console errors, a real PNG chart)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dybench.cli import app
from dybench.data import Dataset
from dybench.escaping import plot_text
from dybench.leaderboard import publish, read_board
from dybench.metrics import score_predictions
from dybench.prompts import LETTERED
from dybench.schema import Item, Prediction
from dybench.atomic import write_json_atomic
from dybench.store import DatasetRef, RunConfig, prediction_key

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def make_dataset(categories: tuple[str, str] = ("moving_direction", "event_sequence")) -> Dataset:
    items = []
    for category, n_options in zip(categories, (4, 2)):
        for pair in range(6):
            first = "A" if pair % 2 else "B"
            second = "B" if first == "A" else "A"
            for transform, answer in (("original", first), ("hflip", second)):
                items.append(Item(id=f"{category}-{pair}-{transform}", pair_id=f"{category}-{pair}", task=category,
                                  category=category, video="v.mp4", question="q?",
                                  options=["left", "right", "up", "down"][:n_options], answer=answer, transform=transform))
    return Dataset("unit-set", "synthetic", Path("."), items, "fp0")


def write_run(root: Path, model: str, right_share: float, created: str = "2026-11-01T10:00:00+00:00",
              categories: tuple[str, str] = ("moving_direction", "event_sequence"), name: str | None = None) -> Path:
    """A run directory as `dybench eval` leaves it (run.json, predictions.jsonl, scores.json)."""
    dataset = make_dataset(categories)
    run_dir = root / (name or model.replace(":", "-"))
    config = RunConfig(model=model, backend="baseline", prompt=LETTERED,
                       dataset=DatasetRef(spec="/data/unit-set", name="unit-set", family="synthetic", n_items=24),
                       dataset_fingerprint="fp0", versions={"dybench": "0.1.0"}, created=created, updated=created).sealed()
    cutoff = int(len(dataset.items) * right_share)
    predictions = [Prediction(id=i.id, key=prediction_key(i.id, config.fingerprint), output="?",
                              pred=i.answer if n < cutoff else "A") for n, i in enumerate(dataset.items)]
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


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (/usr/bin/chromium "
                                    "absent; scripts/install.sh installs it with apt-get where it runs as root)")


def open_in_chromium(page: Path, tmp_path: Path, fragment: str = "") -> tuple[str, str]:
    """The page's DOM after headless Chromium loaded it (and ran its scripts), and Chromium's log."""
    profile = tmp_path / "chromium-profile"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000",
               "--dump-dom", f"{page.as_uri()}{fragment}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


@needs_chromium
def test_html_opens_in_headless_chromium_without_console_errors_and_shows_every_row(runs, tmp_path):
    out = tmp_path / "page.csv"
    publish(runs, out, include=[REPO / "leaderboards" / "dybench-reported.csv"])
    board = read_board(out)
    page = out.with_suffix(".html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.read_text())  # self-contained
    dom, log = open_in_chromium(page, tmp_path, "#sort=p_acc")
    console = [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    assert 'data-status="ok"' in dom
    assert f'data-rows="{len(board)}"' in dom
    shown = re.findall(r'<tr class="row[^"]*"[^>]*><td class="text">([^<]*)</td><td class="text">([^<]*)</td>', dom)
    assert sorted(shown) == sorted(zip(board["model"], board["dataset"]))
    # the page sorted itself by P-Acc (descending, blanks last), as asked in the URL
    p_acc_cells = re.findall(r'<tr class="row[^"]*"[^>]*>(?:<td[^>]*>.*?</td>){4}<td data-sort="([^"]*)"', dom)
    numbers = [float(v) for v in p_acc_cells if v]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == board["p_acc"].notna().sum()
    assert p_acc_cells[len(numbers):] == [""] * (len(board) - len(numbers))


# --- hostile names: every rendering shows them as text ----------------------------------------

HOSTILE_CATEGORY = """x"><img src=x onerror="document.title='XSS category'">"""
HOSTILE_MODEL = """<script>document.title='XSS model'</script><img src=x onerror="document.title='XSS model'">"""
HOSTILE_COLUMN = "p_acc_y\"><svg onload=\"document.title='XSS include'\"></svg>"
HOSTILE_TITLE = """</title><script>document.title='XSS title'</script>"""


class PageParts(HTMLParser):
    """The elements of a page and the data-column of its headings, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.columns: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_title = tag == "title"
        if tag == "th":
            self.columns.append(dict(attrs)["data-column"] or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def hostile_board(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Runs whose model and category names are HTML, and a CSV to include whose column name is."""
    runs = [write_run(tmp_path / "runs", HOSTILE_MODEL, 1.0, categories=(HOSTILE_CATEGORY, "event_sequence"),
                      name="hostile"),
            write_run(tmp_path / "runs", "model-half", 0.5)]
    include = tmp_path / "other.csv"
    pd.DataFrame([{"model": "other", "dataset": "unit-set", "config_hash": "c0", "p_acc": 0.5,
                   HOSTILE_COLUMN: 0.25}]).to_csv(include, index=False)
    return include, runs


@needs_chromium
def test_names_from_manifests_and_included_csvs_never_run_as_script_in_the_page(tmp_path):
    include, runs = hostile_board(tmp_path)
    out = tmp_path / "hostile.csv"
    publish(runs, out, include=[include], title=HOSTILE_TITLE)
    page = out.with_suffix(".html")
    dom, log = open_in_chromium(page, tmp_path)
    seen = PageParts()
    seen.feed(dom)
    assert seen.title == HOSTILE_TITLE  # the document.title every payload would have changed
    assert seen.tags.count("script") == 1 and "img" not in seen.tags and "svg" not in seen.tags
    assert 'data-status="ok"' in dom and 'data-rows="3"' in dom  # the page's own script still ran
    assert f"p_acc_{HOSTILE_CATEGORY}" in seen.columns and HOSTILE_COLUMN in seen.columns  # names kept, as text
    written = PageParts()
    written.feed(page.read_text())
    assert written.tags.count("script") == 1 and "img" not in written.tags and "svg" not in written.tags


def test_markdown_shows_hostile_names_as_text_in_their_own_cells(tmp_path):
    from markdown_it import MarkdownIt

    model = "m|x <img src=x onerror=alert(1)> [click](javascript:alert(1)) *b* `c` _d_ back\\slash"
    runs = [write_run(tmp_path / "runs", model, 1.0, categories=("moving_direction", "cat|<b>"), name="hostile")]
    out = tmp_path / "md.csv"
    publish(runs, out)
    table = [line for line in out.with_suffix(".md").read_text().splitlines() if line.startswith("|")]
    rendered = MarkdownIt("commonmark").enable("table").render("\n".join(table))

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.rows: list[list[str]] = []

            self.in_cell = False

        def handle_starttag(self, tag: str, attrs: list) -> None:
            self.tags.append(tag)
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.rows[-1].append("")
                self.in_cell = True

        def handle_endtag(self, tag: str) -> None:
            self.in_cell = False

        def handle_data(self, data: str) -> None:
            if self.in_cell:
                self.rows[-1][-1] += data

    cells = Cells()
    cells.feed(rendered)
    assert set(cells.tags) == {"table", "thead", "tbody", "tr", "th", "td"}
    header, row = cells.rows
    assert len(row) == len(header)
    assert row[0] == model and "P-Acc cat|<b> %" in header


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from dybench.cli import main; main()", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": "250"})


def test_rich_markup_in_categories_and_paths_prints_as_written_by_every_command(synthetic_test_set, tmp_path):
    """build-pairs, eval, score, probe and publish print tables of categories and paths; `[/]` in them is text."""
    data = tmp_path / "[/]data"
    shutil.copytree(synthetic_test_set, data)
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    (data / "manifest.jsonl").write_text("".join(json.dumps({**row, "category": f"[/]{row['category']}"}) + "\n"
                                                 for row in rows))
    run, probes = tmp_path / "[red]runs" / "[/]run", tmp_path / "[bold]probes"
    steps = {
        "build": ["build-pairs", "--out", str(tmp_path / "[/]built"), "--tasks", "moving_direction",
                  "--pairs-per-task", "1", "--no-progress"],
        "eval": ["eval", "--model", "baseline:random", "--data", str(data), "--out", str(run), "--no-progress"],
        "score": ["score", str(run)],
        "probe": ["probe", "--model", "baseline:random", "--data", str(data), "--out", str(probes),
                  "--probes", "blank", "--no-progress"],
        "publish": ["leaderboard", "publish", str(run), str(probes), "--out", str(tmp_path / "[/]board.csv")],
    }
    for name, args in steps.items():
        result = cli(*args)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, name
        assert "[/]" in result.stdout, name
    assert "[/]run" in cli(*steps["score"]).stdout
    assert "[/]board.csv" in cli(*steps["publish"]).stdout


def test_rich_markup_in_a_model_name_prints_as_written(tmp_path):
    model = "[/]broken [bold]model"
    run = write_run(tmp_path / "runs", model, 1.0, name="run")
    result = cli("leaderboard", "publish", str(run), "--out", str(tmp_path / "board.csv"))
    assert result.returncode == 0, result.stderr
    assert model in result.stdout


def test_mathtext_in_a_model_name_is_drawn_as_written_and_later_publishes_still_work(tmp_path):
    board = tmp_path / "math.csv"
    for number, model in enumerate([r"$\frac{a}$", "plain", r"cost $5 \$ and $x^2$"]):
        run = write_run(tmp_path / "runs", model, 1.0, name=f"run{number}")
        result = cli("leaderboard", "publish", str(run), "--out", str(board), "--title", r"$\alpha")
        assert result.returncode == 0, result.stderr
        assert board.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(read_board(board)) == 3


@pytest.mark.parametrize("name", [r"$\frac{a}$", r"cost $5 \$ and $x^2$", "$", r"a\b $\alpha$"])
def test_chart_text_draws_exactly_the_characters_given(name):
    """A label escaped for matplotlib draws the same pixels as the raw text with math parsing off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def pixels(**text) -> np.ndarray:
        fig = plt.figure(figsize=(4, 1), dpi=50)
        fig.text(0.05, 0.4, **text)
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba()).copy()
        plt.close(fig)
        return image

    assert (pixels(s=plot_text(name)) == pixels(s=name, parse_math=False)).all()


def test_readme_publish_command_with_the_reported_table_prints_its_table(runs, tmp_path):
    """The README's command, through the CLI: reported rows without a pair count print as '-'."""
    (tmp_path / "leaderboards").mkdir()
    shutil.copy(REPO / "leaderboards" / "dybench-reported.csv", tmp_path / "leaderboards")
    result = cli("leaderboard", "publish", *map(str, runs), "--out", "lb/mine.csv", "--include",
                 "leaderboards/dybench-reported.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Gemini-3.1-Pro" in result.stdout and "model-good" in result.stdout
    assert "wrote lb/mine.csv" in result.stdout
    assert len(read_board(tmp_path / "lb" / "mine.csv")) == 33


# --- concurrent publishers --------------------------------------------------------------------

PUBLISHER = """
import sys, time
from pathlib import Path
from dybench.leaderboard import publish
board, go, *runs = sys.argv[1:]
while not Path(go).exists():
    time.sleep(0.005)
for run in runs:
    publish([Path(run)], Path(board))
"""


def test_two_processes_publishing_to_one_board_keep_every_row(tmp_path):
    """20 rounds: in each, two processes publish one new run each to the same board at once."""
    rounds = 20
    board, go = tmp_path / "board.csv", tmp_path / "go"
    sides = [[write_run(tmp_path / side, f"{side}-{n}", n / rounds) for n in range(rounds)] for side in "ab"]
    workers = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(board), str(go), *map(str, runs)],
                                stderr=subprocess.PIPE, text=True) for runs in sides]
    time.sleep(3)  # both have imported pandas and matplotlib and wait for the start
    go.touch()
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr
    models = sorted(read_board(board)["model"])
    assert models == sorted(f"{side}-{n}" for side in "ab" for n in range(rounds))
