"""The shortcut lab's report: results.csv (one row per policy), curves.png, summary.md.

The reading in summary.md is computed from the measured numbers against the targets the issue set
for the mechanism (GRPO P-Acc <= 0.3 with a high shortcut rate; CRPO >= 0.7 and >= 0.3 above
GRPO). It states whether they were met; it never adjusts anything to meet them.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dybench.atomic import write_text_atomic

if TYPE_CHECKING:
    from dybench.lab.shortcut import CurvePoint, RunResult, ShortcutSettings

RESULTS = "results.csv"
CURVES = "curves.png"
SUMMARY = "summary.md"
METRICS = ("acc", "p_acc", "shortcut_rate", "same_answer_rate", "single_frame_p_acc", "train_acc_last")
GRPO_MAX_P_ACC = 0.3
CRPO_MIN_P_ACC = 0.7
MIN_GAP = 0.3
TERMS = (
    ("reward/orig/correct", "train accuracy (original clips)"),
    ("reward/cf/behave", "CRPO: counterfactual behaves"),
    ("reward/orig/crr", "CRPO: R_CRR (original)"),
    ("reward/orig/temporal", "T-GRPO: temporal bonus"),
)


def write_report(out: Path, settings: ShortcutSettings, results: list[RunResult], warm_point: CurvePoint,
                 elapsed_s: float, invocations: int = 1) -> None:
    write_results(out / RESULTS, results)
    plot_curves(out, settings, warm_point, out / CURVES)
    write_text_atomic(out / SUMMARY, summary_text(settings, results, elapsed_s, invocations))


def write_results(path: Path, results: list[RunResult]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    fields = list(results[0].model_dump())
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for result in results:
            writer.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v)
                             for k, v in result.model_dump().items()})
    tmp.replace(path)


# --- numbers -------------------------------------------------------------------------------------


def mean_of(results: list[RunResult], algo: str, metric: str) -> float | None:
    values = [getattr(r, metric) for r in results if r.algo == algo and getattr(r, metric) is not None]
    return statistics.fmean(values) if values else None


def spread_of(results: list[RunResult], algo: str, metric: str) -> float | None:
    values = [getattr(r, metric) for r in results if r.algo == algo and getattr(r, metric) is not None]
    return statistics.stdev(values) if len(values) > 1 else None


def _cell(mean: float | None, spread: float | None = None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.2f}" + (f" ± {spread:.2f}" if spread is not None else "")


def reading(results: list[RunResult]) -> list[str]:
    """Plain statements about the measured means, against the issue's targets."""
    grpo, crpo = mean_of(results, "grpo", "p_acc"), mean_of(results, "crpo", "p_acc")
    warm = mean_of(results, "warm-start", "p_acc")
    grpo_cut = mean_of(results, "grpo", "shortcut_rate")
    crpo_cut = mean_of(results, "crpo", "shortcut_rate")
    warm_cut = mean_of(results, "warm-start", "shortcut_rate")
    lines = []
    if warm is not None and warm_cut is not None:
        lines.append(f"The warm start scores P-Acc {warm:.2f} on the decorrelated test with shortcut rate "
                     f"{warm_cut:.2f} (1.0 = always the colour's answer; a model that reads the motion agrees "
                     "with the colour about a quarter of the time).")
    if grpo is None or crpo is None:
        lines.append("GRPO and CRPO were not both run, so the mechanism cannot be judged from this folder.")
        return lines
    gap = crpo - grpo
    met = grpo <= GRPO_MAX_P_ACC and crpo >= CRPO_MIN_P_ACC and gap >= MIN_GAP
    lines.append(f"Mean test P-Acc: GRPO {grpo:.2f} (shortcut rate {_cell(grpo_cut)}), CRPO {crpo:.2f} "
                 f"(shortcut rate {_cell(crpo_cut)}), a gap of {gap:+.2f}.")
    if met:
        lines.append(f"The targets are met (GRPO <= {GRPO_MAX_P_ACC}, CRPO >= {CRPO_MIN_P_ACC} and at least "
                     f"{MIN_GAP} above GRPO): at these settings the counterfactual branch moved the policy off "
                     "the colour shortcut and correctness-only RL did not.")
    else:
        missed = []
        if grpo > GRPO_MAX_P_ACC:
            missed.append(f"GRPO's P-Acc is above {GRPO_MAX_P_ACC}")
        if crpo < CRPO_MIN_P_ACC:
            missed.append(f"CRPO's P-Acc is below {CRPO_MIN_P_ACC}")
        if gap < MIN_GAP:
            missed.append(f"the gap is below {MIN_GAP}")
        lines.append("The targets are not met (" + "; ".join(missed) + "): at these settings this run does not "
                     "reproduce the mechanism in full. The numbers above are what was measured.")
    if crpo_cut is not None and grpo_cut is not None:
        direction = "lower" if crpo_cut < grpo_cut else "not lower"
        lines.append(f"CRPO's shortcut rate is {direction} than GRPO's ({crpo_cut:.2f} vs {grpo_cut:.2f}).")
    return lines


def summary_text(settings: ShortcutSettings, results: list[RunResult], elapsed_s: float, invocations: int = 1) -> str:
    algos = ["warm-start", *settings.algos]
    lines = [
        "# Shortcut lab: does correctness-only RL keep a colour shortcut that CRPO removes?",
        "",
        "Training clips: the moving object's colour names its direction on every clip "
        f"({', '.join(f'{c} moves {d}' for d, c in settings.cue.items())}); test clips: colours at random, "
        "both clips of every counterfactual pair. Shortcut rate: share of test answers (objects of a cue "
        "colour) equal to the answer the colour predicts. Single-frame P-Acc: the same test with every frame "
        "replaced by the middle one (no motion to see).",
        "",
        f"Model {settings.model}; warm start: sft, {settings.warm_steps} updates x {settings.warm_batch} "
        f"questions, lr {settings.warm_lr:g}, on the cued training clips"
        + (f" plus both clips of {settings.warm_motion_pairs} motion pairs rendered without the cue (objects of a "
           "non-cue colour only)" if settings.warm_motion_pairs else "")
        + f". RL: {settings.rl_steps} updates x {settings.rl_batch} questions, "
        f"lr {settings.rl_lr:g}, beta {settings.beta:g}"
        + (f", reward weights {settings.rewards.model_dump()}" if settings.rewards != type(settings.rewards)() else "")
        + (f", advantage {settings.advantage}" if settings.advantage != "per_branch" else "")
        + f", {2 * settings.group_size} rollouts per question for "
        f"every algorithm (GRPO G={2 * settings.group_size}; T-GRPO and CRPO G={settings.group_size} per branch), "
        f"seeds 0..{settings.seeds - 1}. Data: {settings.train_pairs} training pairs (originals used), "
        f"{settings.test_pairs} test pairs, {settings.size}x{settings.size}, {settings.frames} frames.",
        "",
        "## Mean over seeds (± standard deviation)",
        "",
        "| policy | Acc | P-Acc | shortcut rate | same-answer rate | single-frame P-Acc | train acc (last 10) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for algo in algos:
        cells = [_cell(mean_of(results, algo, m), spread_of(results, algo, m)) for m in METRICS]
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    lines += ["", "## Reading", ""]
    lines += [f"- {line}" for line in reading(results)]
    lines += [
        "",
        "## Every run",
        "",
        "| policy | seed | Acc | P-Acc | shortcut rate | single-frame P-Acc |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(f"| {r.algo} | {'' if r.seed is None else r.seed} | {_cell(r.acc)} | {_cell(r.p_acc)} | "
                     f"{_cell(r.shortcut_rate)} | {_cell(r.single_frame_p_acc)} |")
    runs = "one invocation" if invocations == 1 else f"{invocations} invocations (finished stages are reused)"
    lines += ["", f"Wall time: {elapsed_s / 60:.1f} min over {runs}. Curves: `curves.png`; every number: "
              "`results.csv`.", ""]
    return "\n".join(lines)


# --- the chart -----------------------------------------------------------------------------------

COLOURS = {"grpo": "tab:red", "t-grpo": "tab:orange", "crpo": "tab:blue"}


def _training_series(out: Path, algo: str, seeds: int, key: str) -> list[list[tuple[int, float]]]:
    from dybench.lab.shortcut import run_name
    from dybench.train.metrics import read_metrics

    series = []
    for seed in range(seeds):
        run = out / "runs" / run_name(algo, seed)
        if not (run / "metrics.jsonl").is_file():
            continue
        rows = [(int(row["step"]), float(row[key])) for row in read_metrics(run) if row.get(key) is not None]
        if rows:
            series.append(rows)
    return series


def _mean_series(series: list[list[tuple[int, float]]], smooth: int = 1) -> tuple[list[int], list[float]]:
    """Mean over seeds at each step present in every seed, then a trailing moving average."""
    steps = sorted(set.intersection(*(set(s for s, _ in one) for one in series)))
    values = [statistics.fmean(dict(one)[step] for one in series) for step in steps]
    if smooth > 1:
        values = [statistics.fmean(values[max(0, i - smooth + 1) : i + 1]) for i in range(len(values))]
    return steps, values


def plot_curves(out: Path, settings: ShortcutSettings, warm_point: CurvePoint, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dybench.lab.shortcut import CURVE, read_curve, run_name

    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    smooth = max(1, settings.rl_steps // 15)
    panels: list[tuple[Any, str, str]] = [
        (axes[0][0], "reward/orig/correct", "train accuracy on original clips (reward term)"),
        (axes[0][1], "", "other reward terms"),
    ]
    for ax, key, title in panels:
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("RL update")
        ax.set_ylim(-0.05, 1.05)
    for algo in settings.algos:
        series = _training_series(out, algo, settings.seeds, "reward/orig/correct")
        if series:
            axes[0][0].plot(*_mean_series(series, smooth), color=COLOURS.get(algo), label=algo)
    for key, label in TERMS[1:]:
        for algo in settings.algos:
            series = _training_series(out, algo, settings.seeds, key)
            if series:
                style = {"reward/cf/behave": "-", "reward/orig/crr": "--", "reward/orig/temporal": ":"}[key]
                axes[0][1].plot(*_mean_series(series, smooth), style, color=COLOURS.get(algo), label=label)
    for ax, metric, title in ((axes[1][0], "p_acc", "test P-Acc (decorrelated split)"),
                              (axes[1][1], "shortcut_rate", "test shortcut rate (answer = colour's answer)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("RL update")
        ax.set_ylim(-0.05, 1.05)
        for algo in settings.algos:
            curves = []
            for seed in range(settings.seeds):
                points = read_curve(out / "runs" / run_name(algo, seed) / CURVE)
                curves.append([(0, getattr(warm_point, metric))] + [(p.step, getattr(p, metric)) for p in points])
            curves = [[(s, v) for s, v in c if v is not None] for c in curves]
            curves = [c for c in curves if c]
            if not curves:
                continue
            steps, mean = _mean_series(curves)
            ax.plot(steps, mean, marker="o", color=COLOURS.get(algo), label=f"{algo} (mean of {len(curves)})")
            for one in curves:
                ax.plot([s for s, _ in one], [v for _, v in one], color=COLOURS.get(algo), alpha=0.25, linewidth=0.8)
    axes[1][0].axhline(CRPO_MIN_P_ACC, color="grey", linestyle=":", linewidth=0.8)
    axes[1][0].axhline(GRPO_MAX_P_ACC, color="grey", linestyle=":", linewidth=0.8)
    for ax in (axes[0][0], axes[0][1], axes[1][0], axes[1][1]):
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="best")
    figure.suptitle("Shortcut lab: RL from a colour-shortcut warm start (curves: mean over seeds)", fontsize=11)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
