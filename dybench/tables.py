"""Rich tables of scores and leaderboards, shared by `dybench score`, `leaderboard publish` and the demo.

Every name from the data (model, dataset, category) goes through dybench.escaping.rich_text: rich
reads table cells and titles as markup, and a name such as `[/]` would otherwise stop the print."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.table import Table

from dybench.escaping import rich_text


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA (a CSV cell left empty, e.g. the pair count of a reported row)."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN is the one value unequal to itself
    except TypeError:  # pd.NA: its comparisons are NA, whose truth is undefined
        return True


def percent(value: Any, digits: int = 1, missing: str = "-") -> str:
    """A fraction as a percentage ("0.5" -> "50.0"); `missing` stands in for None, NaN and NA."""
    if is_missing(value):
        return missing
    return f"{100 * float(value):.{digits}f}"


def interval(ci: Any, digits: int = 1) -> str:
    if not ci or any(is_missing(v) for v in ci):
        return ""
    return f"[{percent(ci[0], digits)}, {percent(ci[1], digits)}]"


SHORT_NAMES = {"event_sequence": "events", "moving_direction": "direction", "reversible_dynamics": "reversible"}


def scores_table(scores: dict[str, Any], title: str) -> Table:
    """Acc and P-Acc (with 95% intervals) overall and per category, in percent."""
    table = Table(title=rich_text(title))
    for column in ("category", "Acc %", "95% CI", "P-Acc %", "95% CI", "pairs"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for name, entry in sorted((scores.get("per_category") or {}).items()):
        table.add_row(rich_text(name), percent(entry.get("acc")), interval(entry.get("acc_ci")),
                      percent(entry.get("p_acc")), interval(entry.get("p_acc_ci")), str(entry.get("n_pairs", "-")))
    table.add_row("[bold]all", percent(scores.get("acc")), interval(scores.get("acc_ci")),
                  percent(scores.get("p_acc")), interval(scores.get("p_acc_ci")), str(scores.get("n_pairs", "-")))
    return table


def scores_summary(scores: dict[str, Any]) -> list[str]:
    """Lines under the table: counts, diagnostics, TimeBlind's metrics, notes."""
    diagnostics = scores.get("diagnostics") or {}
    lines = [
        f"items {scores.get('n_items')}  missing {scores.get('n_missing')}  invalid {percent(scores.get('invalid_rate'))}%"
        f"  unpaired {scores.get('n_unpaired_items', 0)}",
        f"same answer on both items of a pair {percent(diagnostics.get('same_answer_rate'))}%"
        f"  (answer changed {percent(diagnostics.get('answer_change_rate'))}%)"
        f"  Acc original {percent(diagnostics.get('acc_original'))}%"
        f" / counterfactual {percent(diagnostics.get('acc_counterfactual'))}%",
    ]
    tb = scores.get("timeblind")
    if tb:
        lines.append(
            f"TimeBlind (reference scorer): Acc {percent(tb['acc'], 2)}  Q-Acc {percent(tb['q_acc'], 2)}"
            f"  V-Acc {percent(tb['v_acc'], 2)}  I-Acc {percent(tb['i_acc'], 2)} {interval(tb.get('i_acc_ci'))}"
            f"  over {tb['n_instances']} instances ({tb['n_instances_without_predictions']} without predictions"
            f" left out, {tb['n_incomplete_instances']} incomplete scored wrong)"
        )
    lines.extend(f"note: {note}" for note in scores.get("notes") or [])
    return lines


def leaderboard_table(frame: Any, title: str) -> Table:
    """A leaderboard DataFrame (dybench.leaderboard columns) as a compact rich table, in percent.
    Columns that hold one value for every row (dataset, source, pairs) move into the caption."""
    from dybench.leaderboard import categories_of

    categories = [c for c in categories_of(frame.columns) if frame[f"p_acc_{c}"].notna().any()]
    reliance = "temporal_reliance" in frame.columns and frame["temporal_reliance"].notna().any()
    varying = [c for c in ("dataset", "source", "n_pairs") if frame[c].nunique(dropna=False) > 1]
    constant = [f"{c.replace('n_pairs', 'pairs')}: {_cell(frame[c].iloc[0])}" for c in ("dataset", "source", "n_pairs")
                if c not in varying and len(frame)]
    caption = "  ".join(["rates in %", *constant])
    table = Table(title=rich_text(title), box=box.SIMPLE_HEAD, caption=caption, pad_edge=False, collapse_padding=True, padding=(0, 1, 0, 0))
    table.add_column("model", no_wrap=True, min_width=min(22, int(frame["model"].str.len().max() or 5)))
    for column in varying:
        table.add_column(column.replace("n_pairs", "pairs"), justify="right" if column == "n_pairs" else "left")
    extra = ["reliance"] if reliance else []  # `dybench probe` folders: full P-Acc minus the best static probe
    for column in ("Acc", "P-Acc", "95% CI", *[rich_text(SHORT_NAMES.get(c, c)) for c in categories], *extra):
        table.add_column(column, justify="right", no_wrap=True, min_width=5)
    for _, row in frame.iterrows():
        cells = [rich_text(row["model"])]
        cells += [_cell(row[column]) for column in varying]
        cells += [percent(row["acc"]), percent(row["p_acc"]), interval([row.get("p_acc_lo"), row.get("p_acc_hi")], digits=0),
                  *[percent(row[f"p_acc_{c}"]) for c in categories]]
        cells += [percent(row["temporal_reliance"])] if reliance else []
        table.add_row(*cells)
    return table


def _cell(value: Any) -> str:
    """A text or count cell of the leaderboard table, escaped; '-' where the row has none."""
    if is_missing(value):
        return "-"
    return rich_text(int(value) if isinstance(value, float) and value.is_integer() else value)
