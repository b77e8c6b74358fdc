"""Leaderboards: one CSV row per (model, dataset, settings), plus Markdown, a static HTML page and a PNG.

The CSV's first columns are the leaderboard contract of docs/architecture.md (model, dataset, acc, p_acc,
p_acc_<category>..., n_pairs, date, dybench_version, config_hash); after them come `source`
(measured | reported), TimeBlind's q_acc / v_acc / i_acc, the probe columns of a `dybench probe`
folder (p_acc_<probe>, temporal_reliance, answer_change_reversed), 95% interval bounds
(`<metric>_lo`, `<metric>_hi`) and a one-line `provenance`. Publishing again replaces the rows
with the same (model, dataset, config_hash); every value comes from the run (its date too), never
the clock, so publishing the same runs twice writes the same bytes. Every file is written to a
temp file and renamed into place, under a lock (`.NAME.csv.lock` beside the board) so concurrent
publishers to one board keep each other's rows. Names from the data reach every rendering through
dybench.escaping, so they show as written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from dybench.atomic import write_atomic
from dybench.errors import DyBenchError
from dybench.escaping import html_text, markdown_text, plot_text
from dybench.locks import file_lock, lock_path_for
from dybench.probe_suite import PROBE_COLUMNS
from dybench.score_blocks import SCORE_BLOCKS
from dybench.tables import percent
from dybench.text_files import read_text

KEY = ["model", "dataset", "config_hash"]
HEAD = ["model", "dataset", "acc", "p_acc"]
META = ["n_pairs", "date", "dybench_version", "config_hash"]
EXTRA = ["source", "q_acc", "v_acc", "i_acc", "n_items"]
INTEGER_COLUMNS = ["n_pairs", "n_items"]
TEXT_COLUMNS = ["model", "dataset", "date", "dybench_version", "config_hash", "source", "provenance"]
DIGITS = 6


# --- rows from runs ---------------------------------------------------------------------------


def _bounds(prefix: str, ci: Any) -> dict[str, float | None]:
    low, high = (ci or [None, None])[:2] if ci else (None, None)
    return {f"{prefix}_lo": low, f"{prefix}_hi": high}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DyBenchError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def _scores_of(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "scores.json"
    if path.is_file():
        return _read_json(path)
    if (run_dir / "run.json").is_file():
        from dybench.evaluate import score_run

        return score_run(run_dir)[0]
    raise DyBenchError(f"{run_dir}: neither scores.json nor run.json; is it a run directory (dybench eval) "
                       "or a scored folder (dybench score --out)?")


def _run_identity(run_dir: Path, scores: dict[str, Any]) -> dict[str, Any]:
    """model, date, version, config hash and provenance: from run.json, else from external scores."""
    if (run_dir / "run.json").is_file():
        from dybench.store import read_run_config

        config = read_run_config(run_dir)
        video = {k: v for k, v in config.video.model_dump().items() if v is not None}
        provenance = "; ".join(
            part for part in (
                f"backend {config.backend}",
                f"video {json.dumps(video, sort_keys=True)}" if video else "",
                f"prompt {config.prompt.name}",
                f"sampling {json.dumps(config.sampling, sort_keys=True)}" if config.sampling else "",
                f"data {config.dataset.name} ({config.dataset.family}, fingerprint {config.dataset_fingerprint})",
                f"probe {config.probe}: video degraded" if config.probe else "",
                f"run {run_dir.name}",
            ) if part
        )
        return {
            # a probe run measures the model on degraded video: its row must not pass for the model's
            "model": f"{config.model} (probe: {config.probe})" if config.probe else config.model,
            "date": (config.created or config.updated)[:10],
            "dybench_version": config.versions.get("dybench", scores.get("dybench_version", "")),
            "config_hash": config.fingerprint or config.compute_fingerprint(),
            "provenance": provenance,
        }
    source = scores.get("source")
    if not source:
        raise DyBenchError(f"{run_dir}/scores.json: no run.json beside it and no `source` record")
    return {
        "model": source["model"],
        "date": source["date"],
        "dybench_version": scores.get("dybench_version", ""),
        "config_hash": source["predictions_sha256"],
        "provenance": f"external predictions {source['predictions']} ({source['format']} format, "
                      f"sha256 {source['predictions_sha256']}); data {scores.get('dataset')} "
                      f"(fingerprint {scores.get('dataset_fingerprint')})",
    }


def probe_suite_row(folder: Path) -> dict[str, Any]:
    """A folder written by `dybench probe`: its full run's row plus the probe columns."""
    from dybench.probe_suite import FULL, read_summary

    summary = read_summary(folder)
    full = summary.run(FULL)
    if full is None:
        raise DyBenchError(f"{folder}/probes.json: no full-video run to publish the probes beside")
    row = run_row(folder / full.run_dir)
    row.update(summary.leaderboard_columns())
    probes = ", ".join(run.probe for run in summary.runs if run.probe != FULL)
    row["provenance"] += f"; probes {probes} ({folder.name}/probes.json)"
    return row


def run_row(run_dir: Path) -> dict[str, Any]:
    """The leaderboard row of one run directory, a folder written by `dybench score --out`, or a
    folder written by `dybench probe` (the full run's row with the probe columns)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DyBenchError(f"{run_dir}: not a directory")
    if (run_dir / "probes.json").is_file():
        return probe_suite_row(run_dir)
    scores = _scores_of(run_dir)
    row: dict[str, Any] = {
        **_run_identity(run_dir, scores),
        "dataset": scores.get("dataset"),
        "source": "measured",
        "acc": scores.get("acc"),
        "p_acc": scores.get("p_acc"),
        "n_pairs": scores.get("n_pairs"),
        "n_items": scores.get("n_items"),
        **_bounds("acc", scores.get("acc_ci")),
        **_bounds("p_acc", scores.get("p_acc_ci")),
    }
    for category, block in (scores.get("per_category") or {}).items():
        if block.get("n_pairs"):
            row[f"p_acc_{category}"] = block.get("p_acc")
            row.update(_bounds(f"p_acc_{category}", block.get("p_acc_ci")))
    for name, block in SCORE_BLOCKS.items():  # extra blocks' columns (TimeBlind's replace acc)
        if scores.get(name):
            row.update(block.columns(scores[name]))
    if scores.get("n_missing"):
        row["provenance"] += f"; {scores['n_missing']} items without predictions (scored wrong)"
    return row


# --- the table --------------------------------------------------------------------------------


def categories_of(columns: Iterable[str]) -> list[str]:
    # p_acc_<probe> (PROBE_COLUMNS) is a probe's P-Acc, not a category's
    return sorted(c.removeprefix("p_acc_") for c in columns
                  if c.startswith("p_acc_") and not c.endswith(("_lo", "_hi")) and c not in PROBE_COLUMNS)


def probe_columns_of(frame: pd.DataFrame) -> list[str]:
    """The probe columns (dybench.probe_suite.PROBE_COLUMNS) that hold a value in some row."""
    return [c for c in PROBE_COLUMNS if c in frame.columns and frame[c].notna().any()]


def ordered_columns(columns: Iterable[str]) -> list[str]:
    columns = set(columns)
    cats = categories_of(columns)
    bounds = [f"{m}_{end}" for m in ("acc", "p_acc", *[f"p_acc_{c}" for c in cats], "i_acc") for end in ("lo", "hi")]
    probes = [c for c in PROBE_COLUMNS if c in columns]
    order = [*HEAD, *[f"p_acc_{c}" for c in cats], *META, *EXTRA, *probes, *bounds, "provenance"]
    return order + sorted(columns - set(order))


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Fixed column order, types and rounding, rows sorted: the same rows always print the same."""
    frame = frame.reindex(columns=ordered_columns(frame.columns))
    for column in frame.columns:
        if column in TEXT_COLUMNS:
            frame[column] = frame[column].astype("string").fillna("")
        elif column in INTEGER_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
        else:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float).round(DIGITS)
    frame["source"] = frame["source"].replace("", "measured")
    # best first within a dataset: by P-Acc, else (TimeBlind rows reported without it) by I-Acc
    frame["_order"] = -frame["p_acc"].fillna(frame["i_acc"] if "i_acc" in frame else -1.0).fillna(-1.0)
    frame = frame.sort_values(["dataset", "source", "_order", "model", "config_hash"], kind="mergesort")
    return frame.drop(columns="_order").reset_index(drop=True)


def read_board(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={c: "string" for c in TEXT_COLUMNS}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DyBenchError(f"{path}: not a leaderboard CSV ({exc})") from None
    missing = [c for c in KEY if c not in frame.columns]
    if missing:
        raise DyBenchError(f"{path}: missing column(s) {', '.join(missing)}; is it a leaderboard CSV?")
    for column in frame.columns:
        if column not in TEXT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column].replace("", None), errors="coerce")
    return frame


def merge_rows(existing: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame:
    """`existing` with every row whose key appears in `rows` replaced by the new one."""
    rows = rows.drop_duplicates(subset=KEY, keep="last")
    if existing is None or existing.empty:
        return normalise(rows)
    new_keys = set(map(tuple, rows[KEY].astype(str).to_numpy()))
    kept = existing[[tuple(k) not in new_keys for k in existing[KEY].astype(str).to_numpy()]]
    return normalise(pd.concat([kept, rows], ignore_index=True))


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


# --- renderings -------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return percent(value, missing="")


def _ci(row: pd.Series, metric: str) -> str:
    low, high = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if _pct(low) == "" or _pct(high) == "":
        return ""
    return f"[{_pct(low)}, {_pct(high)}]"


PROBE_LABELS = {
    "p_acc_single_frame": "P-Acc single frame %", "p_acc_first_last": "P-Acc first+last %",
    "p_acc_shuffled": "P-Acc shuffled %", "p_acc_blank": "P-Acc blank %", "p_acc_reversed": "P-Acc reversed %",
    "temporal_reliance": "temporal reliance (pts)", "answer_change_reversed": "answer change reversed %",
}
"""Headings of the probe columns (dybench probe) in the Markdown and HTML tables."""


def markdown(frame: pd.DataFrame, title: str) -> str:
    cats = categories_of(frame.columns)
    has_timeblind = "i_acc" in frame.columns and frame["i_acc"].notna().any()
    header = ["model", "dataset", "source", "Acc %", "P-Acc %", "P-Acc 95% CI", *[f"P-Acc {c} %" for c in cats]]
    header += ["I-Acc %"] if has_timeblind else []
    probes = probe_columns_of(frame)
    header += [PROBE_LABELS.get(c, c) for c in probes]
    header += ["pairs", "date", "dybench", "config"]
    lines = [f"# {markdown_text(title)}", "", "Rates in percent; intervals: 95% bootstrap over pairs. "
             "`reported` rows are published numbers, not reproduced here.", "",
             "| " + " | ".join(map(markdown_text, header)) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for _, row in frame.iterrows():
        # text from the data is escaped; numbers and intervals are our own formatting
        model, dataset, source, date, version, config = (
            markdown_text(row[c]) for c in ("model", "dataset", "source", "date", "dybench_version", "config_hash"))
        cells = [model, dataset, source, _pct(row["acc"]), _pct(row["p_acc"]), _ci(row, "p_acc"),
                 *[_pct(row[f"p_acc_{c}"]) for c in cats]]
        cells += [_pct(row["i_acc"])] if has_timeblind else []
        cells += [_pct(row[c]) for c in probes]
        cells += ["" if pd.isna(row["n_pairs"]) else str(int(row["n_pairs"])), date, version, config]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1b1b1b; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.35rem 0.6rem; text-align: right; vertical-align: top; }}
th {{ cursor: pointer; background: #f3f3f3; position: sticky; top: 0; user-select: none; }}
th.sorted-asc::after {{ content: " \\25B2"; }} th.sorted-desc::after {{ content: " \\25BC"; }}
td.text, th.text {{ text-align: left; }}
td {{ white-space: nowrap; }}
tr.reported td {{ color: #666; font-style: italic; }}
.ci {{ color: #777; font-size: 0.8em; display: block; white-space: nowrap; }}
details summary {{ cursor: pointer; color: #2a5db0; }}
details div {{ max-width: 28rem; text-align: left; white-space: normal; font-size: 0.8em; }}
</style></head>
<body data-status="loading">
<h1>{title}</h1>
<p>Rates in percent; small numbers under a value are its 95% bootstrap interval (pairs resampled).
P-Acc counts a pair only when both of its clips are answered correctly. Rows marked <i>reported</i> are
published numbers, not reproduced here. Click a column to sort; hover a row or open &ldquo;how&rdquo; for its provenance.</p>
<table id="board"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<p id="count"></p>
<script>
(function () {{
  "use strict";
  window.addEventListener("error", function (event) {{
    document.body.setAttribute("data-status", "error: " + event.message);
  }});
  var table = document.getElementById("board");
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function key(row, column) {{
    var cell = row.cells[column];
    var value = cell.getAttribute("data-sort");
    if (value === null) {{ return {{ text: cell.textContent.trim() }}; }}
    return value === "" ? {{ missing: true }} : {{ number: parseFloat(value) }};
  }}
  function compare(a, b) {{
    if (a.missing || b.missing) {{ return (a.missing ? 1 : 0) - (b.missing ? 1 : 0); }}
    if (a.number !== undefined) {{ return a.number - b.number; }}
    return a.text.localeCompare(b.text);
  }}
  function sortBy(column, descending) {{
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {{
      var a = key(x, column), b = key(y, column);
      var order = compare(a, b);
      if (a.missing || b.missing) {{ return order; }}
      return descending ? -order : order;
    }});
    rows.forEach(function (row) {{ body.appendChild(row); }});
    headers.forEach(function (h) {{ h.classList.remove("sorted-asc", "sorted-desc"); }});
    headers[column].classList.add(descending ? "sorted-desc" : "sorted-asc");
  }}
  headers.forEach(function (header, column) {{
    header.addEventListener("click", function () {{
      sortBy(column, !header.classList.contains("sorted-desc"));
    }});
  }});
  var wanted = /sort=([A-Za-z0-9_]+)/.exec(window.location.hash);
  if (wanted) {{
    headers.forEach(function (header, column) {{
      if (header.getAttribute("data-column") === wanted[1]) {{ sortBy(column, true); }}
    }});
  }}
  document.getElementById("count").textContent = body.rows.length + " rows";
  document.body.setAttribute("data-rows", String(body.rows.length));
  if (document.body.getAttribute("data-status") === "loading") {{
    document.body.setAttribute("data-status", "ok");
  }}
}}());
</script>
</body></html>
"""


def _number_cell(value: Any, ci: str = "") -> str:
    sort = "" if _pct(value) == "" else repr(float(value))
    extra = f'<span class="ci">{html_text(ci)}</span>' if ci else ""
    return f'<td data-sort="{sort}">{_pct(value)}{extra}</td>'


def html_page(frame: pd.DataFrame, title: str) -> str:
    cats = categories_of(frame.columns)
    has_timeblind = "i_acc" in frame.columns and frame["i_acc"].notna().any()
    columns: list[tuple[str, str, bool]] = [("model", "model", True), ("dataset", "dataset", True),
                                            ("source", "source", True), ("acc", "Acc", False), ("p_acc", "P-Acc", False)]
    columns += [(f"p_acc_{c}", f"P-Acc {c.replace('_', ' ')}", False) for c in cats]
    if has_timeblind:
        columns += [("q_acc", "Q-Acc", False), ("v_acc", "V-Acc", False), ("i_acc", "I-Acc", False)]
    columns += [(c, PROBE_LABELS.get(c, c).removesuffix(" %"), False) for c in probe_columns_of(frame)]
    columns += [("n_pairs", "pairs", False), ("date", "date", True), ("provenance", "how", True)]
    head = "".join(f'<th data-column="{html_text(name)}" class="{"text" if text else ""}">{html_text(label)}</th>'
                   for name, label, text in columns)
    body = []
    for _, row in frame.iterrows():
        provenance = (f"{row['provenance']}; dybench {row['dybench_version']}; config {row['config_hash']}")
        cells = []
        for name, _label, text in columns:
            if name == "provenance":
                cells.append(f'<td class="text"><details><summary>how</summary><div>{html_text(provenance)}</div></details></td>')
            elif name == "n_pairs":
                value = row["n_pairs"]
                cells.append(f'<td data-sort="{"" if pd.isna(value) else int(value)}">{"" if pd.isna(value) else int(value)}</td>')
            elif text:
                cells.append(f'<td class="text">{html_text(str(row[name]))}</td>')
            else:
                ci = _ci(row, name) if f"{name}_lo" in frame.columns else ""
                cells.append(_number_cell(row[name], ci))
        css = "row reported" if row["source"] == "reported" else "row"
        body.append(f'<tr class="{css}" title="{html_text(provenance)}">{"".join(cells)}</tr>')
    return _PAGE.format(title=html_text(title), head=head, body="\n".join(body))


def chart_png(frame: pd.DataFrame, title: str) -> bytes:
    """Grouped bars: P-Acc per model (and dataset) overall and per category, with interval bars.
    Drawn with usetex off whatever the user's matplotlibrc says, so plot_text's escaping holds."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context({"text.usetex": False}):
        return _draw_chart(frame, title)


def _draw_chart(frame: pd.DataFrame, title: str) -> bytes:
    import io

    import matplotlib.pyplot as plt
    import numpy as np

    cats = categories_of(frame.columns)
    groups = [("p_acc", "all")] + [(f"p_acc_{c}", c.replace("_", " ")) for c in cats]
    # Only rows that have a P-Acc (TimeBlind rows reported with I-Acc alone have none to draw).
    plotted = frame[frame[[c for c, _ in groups]].notna().any(axis=1)]
    several_datasets = plotted["dataset"].nunique() > 1
    labels = [plot_text(f"{r['model']} ({r['dataset']})" if several_datasets else r["model"]) for _, r in plotted.iterrows()]
    n = max(len(plotted), 1)
    width = 0.8 / n
    colours = plt.get_cmap("tab20" if n > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) + 0.18 * n * len(groups)) + 3.0,
                                    max(4.2, 0.24 * n + 1.6)), dpi=100)
    x = np.arange(len(groups))

    def column(row: pd.Series, name: str) -> float:
        return 100 * float(row[name]) if name in row and not pd.isna(row[name]) else np.nan

    for i, (_, row) in enumerate(plotted.iterrows()):
        values = np.array([column(row, c) for c, _ in groups])
        low = np.array([column(row, f"{c}_lo") for c, _ in groups])
        high = np.array([column(row, f"{c}_hi") for c, _ in groups])
        errors = np.clip(np.vstack([np.nan_to_num(values - low, nan=0.0), np.nan_to_num(high - values, nan=0.0)]), 0.0, None)
        hatch = "//" if row["source"] == "reported" else None
        has_interval = not np.isnan(low).all()
        bars = ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(values, nan=0.0), width,
               yerr=errors if has_interval else None, capsize=2,
               label=labels[i] + (" [reported]" if hatch else ""), hatch=hatch, color=colours(i % colours.N),
               edgecolor="black", linewidth=0.4, error_kw={"elinewidth": 0.8})
        if n <= 8:  # value labels stay readable only for a few bars per group (a 0 bar is otherwise invisible)
            ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.0f}" for v in values], fontsize=7, padding=1)
    if plotted.empty:
        ax.text(0.5, 0.5, "no P-Acc values to draw", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(x)
    ax.set_xticklabels([plot_text(label) for _, label in groups])
    ax.set_ylabel("P-Acc (%), bars: 95% interval")
    ax.set_ylim(0, 100)
    ax.set_title(plot_text(title))
    ax.grid(axis="y", alpha=0.3)
    if not plotted.empty:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


# --- publish ----------------------------------------------------------------------------------


def publish(run_dirs: Iterable[Path], out_csv: Path, include: Iterable[Path] = (), title: str | None = None,
            fresh: bool = False) -> pd.DataFrame:
    """Add the runs' rows (and rows of other leaderboard CSVs in `include`) to `out_csv`, replacing
    rows with the same (model, dataset, config_hash); write NAME.csv/.md/.html/.png; return the table.
    `fresh`: the board holds exactly these rows (what was in `out_csv` before is dropped)."""
    out_csv = Path(out_csv)
    if out_csv.suffix != ".csv":
        raise DyBenchError(f"--out {out_csv}: expected a .csv path (NAME.md/.html/.png are written beside it)")
    rows = [run_row(Path(d)) for d in run_dirs]
    for path in include:
        rows.extend(read_board(Path(path)).to_dict("records"))
    if not rows:
        raise DyBenchError("nothing to publish: give at least one run directory (or --include a leaderboard CSV)")
    return publish_rows(rows, out_csv, title, fresh)


def publish_rows(rows: list[dict[str, Any]], out_csv: Path, title: str | None = None, fresh: bool = False) -> pd.DataFrame:
    """`publish` for rows already made (`run_row`, `probe_suite_row`), e.g. renamed by their caller."""
    out_csv = Path(out_csv)
    title = title or f"DyBench leaderboard: {out_csv.stem}"
    # Read, merge and write under one lock: two publishers to one board would otherwise both read
    # the old rows and the second rename would drop the first one's row.
    with file_lock(lock_path_for(out_csv)):
        existing = read_board(out_csv) if out_csv.is_file() and not fresh else None
        frame = merge_rows(existing, pd.DataFrame.from_records(rows))
        write_atomic(out_csv, csv_bytes(frame))
        write_atomic(out_csv.with_suffix(".md"), markdown(frame, title).encode())
        write_atomic(out_csv.with_suffix(".html"), html_page(frame, title).encode())
        write_atomic(out_csv.with_suffix(".png"), chart_png(frame, title))
    return frame
