"""The end-to-end demo: build, evaluate four models (one a real Qwen3-VL architecture), score, publish."""

from __future__ import annotations

import pytest
from rich.console import Console

from dybench.demo import DEMO_MODELS, run_demo
from dybench.leaderboard import read_board


@pytest.mark.slow
def test_demo_publishes_a_leaderboard_and_a_rerun_reuses_finished_work(tmp_path):
    board = tmp_path / "leaderboards" / "demo.csv"
    board.parent.mkdir()
    stale = "model,dataset,acc,p_acc,n_pairs,date,dybench_version,config_hash\nold-model,synthetic-test,1,1,6,2020-01-01,0.0.1,x\n"
    board.write_text(stale)  # a board left by an older demo: the new one shows only this demo's runs
    console = Console(record=True, width=120)
    run_demo(out=tmp_path / "demo", leaderboard=board, pairs_per_task=2, progress=False, console=console)
    for suffix in (".csv", ".md", ".html", ".png"):
        assert board.with_suffix(suffix).stat().st_size > 0
    frame = read_board(board)
    assert sorted(frame["model"]) == sorted(DEMO_MODELS)
    by_model = frame.set_index("model")
    assert by_model.loc["baseline:constant", "p_acc"] == 0.0
    assert by_model.loc["baseline:motion", "p_acc"] > by_model.loc["baseline:random", "p_acc"]
    assert (frame["n_pairs"] == 6).all()
    first = console.export_text()
    assert "Next:" in first and "train-crpo" in first and "timeblind:" in first

    csv = board.read_bytes()
    again = Console(record=True, width=120)
    run_demo(out=tmp_path / "demo", leaderboard=board, pairs_per_task=2, progress=False, console=again)
    assert again.export_text().count("finished earlier, reusing") == len(DEMO_MODELS)
    assert board.read_bytes() == csv
