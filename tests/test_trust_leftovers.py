"""Every reader of a user's file decodes it the same way (dybench/text_files.py): a byte-order mark
is accepted, and bytes that are not UTF-8 stop with one line naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.lab.shortcut_data import dataset_view
from dybench.schema import Prediction
from dybench.store import PredictionStore
from dybench.timeblind import load_timeblind
from test_official import write_release
from test_timeblind import write_timeblind

BOM = b"\xef\xbb\xbf"
NOT_UTF8 = b"\xff\xfe"


def prediction_line(store: PredictionStore, item_id: str, output: str = "Answer: A") -> bytes:
    row = Prediction(id=item_id, key=store.key(item_id), output=output, pred="A")
    return row.model_dump_json().encode() + b"\n"


# --- predictions.jsonl ----------------------------------------------------------------------------


def test_a_prediction_line_with_bad_bytes_stops_with_its_file_and_line(tmp_path):
    store = PredictionStore(tmp_path, "f1")
    damaged = prediction_line(store, "b", output="Answer: A").replace(b"Answer", b"Answer" + NOT_UTF8)
    store.path.write_bytes(prediction_line(store, "a") + damaged + prediction_line(store, "c"))
    with pytest.raises(DyBenchError, match=r"predictions.jsonl:2: not UTF-8 .*delete the line to redo that item"):
        store.load()


def test_a_reply_with_a_line_separator_character_is_one_prediction(tmp_path):
    store = PredictionStore(tmp_path, "f1")
    store.append([Prediction(id="a", key=store.key("a"), output="first\u2028second\x1cthird", pred="A")])
    store.append([Prediction(id="b", key=store.key("b"), output="Answer: B", pred="B")])
    loaded = store.load()
    assert sorted(loaded) == ["a", "b"]
    assert loaded["a"].output == "first\u2028second\x1cthird"


# --- TimeBlind and the official release -----------------------------------------------------------


def test_timeblind_data_with_a_bom_loads_and_bad_bytes_name_the_line(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind")
    plain = load_timeblind(path)
    path.write_bytes(BOM + path.read_bytes())
    assert [item.id for item in load_timeblind(path).items] == [item.id for item in plain.items]
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"', NOT_UTF8 + b'"', 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DyBenchError, match=r"data.jsonl:3: not UTF-8"):
        load_timeblind(path)


def test_timeblind_json_array_with_a_bom_loads(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind")
    plain = load_timeblind(path)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_bytes(BOM + json.dumps(rows).encode())
    assert len(load_timeblind(path).items) == len(plain.items)


def test_official_category_file_with_a_bom_loads_and_bad_bytes_name_the_line(tmp_path):
    root = write_release(tmp_path / "DyBench")
    category = root / "json" / "event_sequence.json"
    plain = load_data(f"dybench:{root}")
    category.write_bytes(BOM + category.read_bytes())
    assert len(load_data(f"dybench:{root}").items) == len(plain.items)
    category.write_bytes(category.read_bytes().replace(b"pour", b"p" + NOT_UTF8, 1))
    with pytest.raises(DyBenchError, match=r"event_sequence.json:1: not UTF-8"):
        load_data(f"dybench:{root}")


# --- the shortcut lab's dataset views -------------------------------------------------------------


def write_built_folder(folder: Path, names: list[str]) -> Path:
    (folder / "videos").mkdir(parents=True)
    lines = []
    for name in names:
        (folder / "videos" / f"{name}.mp4").write_bytes(b"")
        lines.append(json.dumps({"id": name, "pair_id": name, "video": f"videos/{name}.mp4"}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_a_dataset_view_reads_a_manifest_with_a_bom(tmp_path):
    build = write_built_folder(tmp_path / "build", ["x", "y"])
    manifest = build / "manifest.jsonl"
    manifest.write_bytes(BOM + manifest.read_bytes())
    view = dataset_view([(build, lambda row: True)], tmp_path / "view")
    ids = [json.loads(line)["id"] for line in (view / "manifest.jsonl").read_text().splitlines()]
    assert ids == ["x", "y"]


@pytest.mark.parametrize("damage, message", [
    (NOT_UTF8, r"manifest.jsonl:2: not UTF-8"),
    (b"{", r"manifest.jsonl:2: not valid JSON"),
])
def test_a_damaged_manifest_line_stops_a_dataset_view_with_its_line(tmp_path, damage, message):
    build = write_built_folder(tmp_path / "build", ["x", "y"])
    manifest = build / "manifest.jsonl"
    lines = manifest.read_bytes().split(b"\n")
    lines[1] = damage + lines[1]
    manifest.write_bytes(b"\n".join(lines))
    with pytest.raises(DyBenchError, match=message):
        dataset_view([(build, lambda row: True)], tmp_path / "view")
    assert not (tmp_path / "view").exists()


def test_a_bad_byte_after_a_bom_is_named_at_its_own_line_and_offset():
    from dybench.text_files import decode_text

    data = BOM + b"one\n" + NOT_UTF8 + b"two\n"
    with pytest.raises(DyBenchError, match=r"^f.txt:2: not UTF-8 text \(byte 0xff at offset 7\)"):
        decode_text(data, "f.txt")


# --- the probe chart --------------------------------------------------------------------------------


def test_the_probe_chart_draws_names_as_written_even_when_matplotlibrc_asks_for_tex(tmp_path):
    import matplotlib

    from dybench.probe_suite import ProbeRun, ProbeSummary, chart_png

    summary = ProbeSummary(
        model=r"odd_model & 100% $\frac{a}$", dataset="data#1 ~x", data=str(tmp_path), static_probes=["shuffled"],
        runs=[ProbeRun(probe="full", run_dir="full", p_acc=0.5, n_pairs=4),
              ProbeRun(probe="shuffled", run_dir="shuffled", p_acc=0.25, n_pairs=4)],
        temporal_reliance=0.25, best_static_probe="shuffled",
    )
    # A user's matplotlibrc with usetex on would hand every label to LaTeX (absent here, and `&`, `%`,
    # `_`, `#` and `~` are special there); the chart is drawn with it off, like the leaderboard's.
    with matplotlib.rc_context({"text.usetex": True}):
        png = chart_png(summary)
        assert matplotlib.rcParams["text.usetex"] is True  # the user's setting is left as it was
    assert png.startswith(b"\x89PNG")


def test_a_probe_summary_saved_with_a_bom_reads_back(tmp_path):
    from dybench.probe_suite import SUMMARY, ProbeRun, ProbeSummary, read_summary

    summary = ProbeSummary(model="m", dataset="d", data="x", static_probes=[], temporal_reliance=None,
                           best_static_probe=None, runs=[ProbeRun(probe="full", run_dir="full")])
    (tmp_path / SUMMARY).write_bytes(BOM + summary.model_dump_json().encode())
    assert read_summary(tmp_path) == summary


# --- a run folder's run.json and scores.json, as publish reads them ---------------------------------


@pytest.fixture
def finished_run(synthetic_test_set, tmp_path) -> Path:
    from dybench.evaluate import run_eval

    run_dir = tmp_path / "run"
    run_eval("baseline:constant", str(synthetic_test_set), run_dir, progress=False)
    return run_dir


def test_a_run_whose_json_files_carry_a_bom_publishes(finished_run, tmp_path):
    from dybench.leaderboard import publish

    for name in ("run.json", "scores.json"):
        path = finished_run / name
        path.write_bytes(BOM + path.read_bytes())
    frame = publish([finished_run], tmp_path / "board.csv")
    assert list(frame["model"]) == ["baseline:constant"]


@pytest.mark.parametrize("name", ["run.json", "scores.json"])
def test_a_run_json_file_with_bad_bytes_stops_publish_with_its_name(finished_run, tmp_path, name):
    from dybench.leaderboard import publish

    path = finished_run / name
    path.write_bytes(path.read_bytes().replace(b"{", b"{" + NOT_UTF8, 1))
    with pytest.raises(DyBenchError, match=rf"{name}:1: not UTF-8"):
        publish([finished_run], tmp_path / "board.csv")
