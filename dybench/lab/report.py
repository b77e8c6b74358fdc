"""The shortcut lab's report: results.csv (one row per policy), curves.png, summary.md, and the
final policies on a leaderboard (leaderboard.csv/.md/.html/.png, with the probe columns).

The reading in summary.md compares the measured numbers with targets fixed before any run
(`TARGETS` below, from the lab's design: README, "Shortcut lab"). It says which hold; it never
adjusts anything to meet them. Training diagnostics (reward spread per branch, answer-change rate,
accuracy per branch) come from each run's metrics.jsonl.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from dybench.atomic import write_text_atomic
from dybench.metrics import bootstrap_interval

if TYPE_CHECKING:
    from dybench.lab.shortcut import CurvePoint, Outcome, RunResult, ShortcutSettings

RESULTS = "results.csv"
CURVES = "curves.png"
SUMMARY = "summary.md"
LEADERBOARD = "leaderboard.csv"
TABLE = (
    ("acc", "Acc"), ("p_acc", "P-Acc"), ("shortcut_rate", "shortcut rate"), ("same_answer_rate", "same-answer rate"),
    ("other_p_acc", "P-Acc, other colours"), ("single_frame_p_acc", "single-frame P-Acc"),
    ("train_acc_last", "train acc (last 10)"),
)


class Targets(NamedTuple):
    control_min_p_acc: float = 0.8
    warm_other_p_acc: tuple[float, float] = (0.3, 0.8)
    warm_min_shortcut: float = 0.5
    crpo_over_warm: float = 0.15
    crpo_over_grpo: float = 0.2
    grpo_shortcut_drop: float = 0.1


TARGETS = Targets()
DIAGNOSTICS = (
    ("acc/orig", "acc, original branch"),
    ("acc/cf", "acc, counterfactual branch"),
    ("answer_change_rate", "answer-change rate"),
    ("reward_std/orig", "reward spread, original branch"),
    ("reward_std/cf", "reward spread, counterfactual branch"),
)
"""Training metrics summarised per algorithm (first and last 10 updates) and drawn in curves.png."""
N_BOOT = 10_000


def write_report(out: Path, settings: ShortcutSettings, outcome: Outcome, elapsed_s: float, invocations: int = 1) -> None:
    write_results(out / RESULTS, outcome.results)
    if outcome.control_passed:
        plot_curves(out, settings, outcome.warm_point, out / CURVES)
    else:
        (out / CURVES).unlink(missing_ok=True)
    interval = crpo_minus_grpo(out, settings) if outcome.control_passed else None
    write_text_atomic(out / SUMMARY, summary_text(out, settings, outcome, interval, elapsed_s, invocations))
    publish_policies(out, settings, outcome)


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


def publish_policies(out: Path, settings: ShortcutSettings, outcome: Outcome) -> None:
    """Every evaluated policy on OUT/leaderboard.*, named `shortcut-lab/<policy>`, compared like
    any other model (with the probe columns when the probes ran)."""
    from dybench.lab.shortcut import full_run_dir
    from dybench.leaderboard import probe_suite_row, publish_rows, run_row

    rows = []
    for name, folder in outcome.folders.items():
        evaluated = Path(folder)
        row = probe_suite_row(evaluated / "test") if settings.probes else run_row(full_run_dir(evaluated, settings))
        row["provenance"] = f"model {row['model']}; " + row["provenance"]
        row["model"] = f"shortcut-lab/{name}"
        rows.append(row)
    publish_rows(rows, out / LEADERBOARD, title="Shortcut lab: every policy on the cue-colour test split", fresh=True)


# --- numbers -------------------------------------------------------------------------------------


def values_of(results: list[RunResult], policy: str, metric: str) -> list[float]:
    return [getattr(r, metric) for r in results if r.policy == policy and getattr(r, metric) is not None]


def mean_of(results: list[RunResult], policy: str, metric: str) -> float | None:
    values = values_of(results, policy, metric)
    return statistics.fmean(values) if values else None


def spread_of(results: list[RunResult], policy: str, metric: str) -> float | None:
    values = values_of(results, policy, metric)
    return statistics.stdev(values) if len(values) > 1 else None


def _cell(mean: float | None, spread: float | None = None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.2f}" + (f" ± {spread:.2f}" if spread is not None else "")


class Interval(NamedTuple):
    mean: float
    low: float
    high: float
    n_pairs: int


def pair_means(out: Path, settings: ShortcutSettings, algo: str) -> dict[str, float]:
    """Test pair id -> share of seeds that answered both clips right."""
    from dybench.lab.shortcut import run_name, full_run_dir
    from dybench.lab.shortcut_data import pair_outcomes

    outcomes = [pair_outcomes(full_run_dir(out / "runs" / run_name(algo, seed) / "eval", settings),
                              out / "data" / "test") for seed in range(settings.seeds)]
    return {pair: statistics.fmean(o[pair] for o in outcomes) for pair in outcomes[0]}


def crpo_minus_grpo(out: Path, settings: ShortcutSettings) -> Interval | None:
    """Paired bootstrap over test pairs of P-Acc(CRPO) - P-Acc(GRPO), each pair's score the mean
    over seeds: the 95% percentile interval of 10,000 resamples (seeded: the same folder, the same
    interval)."""
    if not {"crpo", "grpo"} <= set(settings.algos):
        return None
    crpo, grpo = pair_means(out, settings, "crpo"), pair_means(out, settings, "grpo")
    differences = np.array([crpo[pair] - grpo[pair] for pair in sorted(crpo)])
    low, high = bootstrap_interval(differences, None, "crpo-minus-grpo", n_boot=N_BOOT)
    return Interval(float(differences.mean()), low, high, len(differences))


def target_lines(results: list[RunResult], interval: Interval | None, control_passed: bool) -> list[str]:
    """One line per target: the measured number, the target, and whether it holds."""
    t = TARGETS
    control = mean_of(results, "control", "p_acc")
    lines = [_check(f"control: test P-Acc {_cell(control)} (mean of seeds) >= {t.control_min_p_acc}",
                    control is not None and control >= t.control_min_p_acc)]
    if not control_passed:
        return lines + ["RL was not run: below the control's bar the model does not see the motion at these "
                        "settings, so no comparison of RL algorithms could tell anything."]
    warm_other = mean_of(results, "warm-start", "other_p_acc")
    warm_cut = mean_of(results, "warm-start", "shortcut_rate")
    warm = mean_of(results, "warm-start", "p_acc")
    low, high = t.warm_other_p_acc
    lines.append(_check(f"warm start perceives motion partly: P-Acc on colours never used as cues {_cell(warm_other)} "
                        f"in [{low}, {high}]", warm_other is not None and low <= warm_other <= high))
    lines.append(_check(f"warm start prefers the colour: shortcut rate {_cell(warm_cut)} >= {t.warm_min_shortcut}",
                        warm_cut is not None and warm_cut >= t.warm_min_shortcut))
    crpo, grpo = mean_of(results, "crpo", "p_acc"), mean_of(results, "grpo", "p_acc")
    if crpo is None or grpo is None or warm is None:
        return lines + ["GRPO and CRPO were not both run: the comparison cannot be judged from this folder."]
    lines.append(_check(f"CRPO P-Acc {crpo:.2f} >= warm start {warm:.2f} + {t.crpo_over_warm}",
                        crpo >= warm + t.crpo_over_warm))
    ci = "" if interval is None else f", paired bootstrap 95% interval [{interval.low:+.2f}, {interval.high:+.2f}] over {interval.n_pairs} test pairs"
    lines.append(_check(f"CRPO - GRPO P-Acc {crpo - grpo:+.2f} >= +{t.crpo_over_grpo}{ci}, interval above 0",
                        crpo - grpo >= t.crpo_over_grpo and interval is not None and interval.low > 0))
    grpo_cut = mean_of(results, "grpo", "shortcut_rate")
    if grpo_cut is not None and warm_cut is not None:
        lines.append(_check(f"GRPO keeps the shortcut: shortcut rate {grpo_cut:.2f} >= warm start {warm_cut:.2f} "
                            f"- {t.grpo_shortcut_drop}", grpo_cut >= warm_cut - t.grpo_shortcut_drop))
    return lines


def _check(text: str, holds: bool) -> str:
    return f"{'holds' if holds else 'MISSED'}: {text}"


def training_rows(out: Path, settings: ShortcutSettings) -> list[str]:
    """Markdown rows: per algorithm, each diagnostic over the first and the last 10 updates."""
    rows = []
    for algo in settings.algos:
        cells = []
        for key, _ in DIAGNOSTICS:
            series = _training_series(out, algo, settings.seeds, key)
            first = [v for one in series for _, v in one[:10]]
            last = [v for one in series for _, v in one[-10:]]
            cells.append("-" if not first else f"{statistics.fmean(first):.2f} -> {statistics.fmean(last):.2f}")
        rows.append(f"| {algo} | " + " | ".join(cells) + " |")
    return rows


def summary_text(out: Path, settings: ShortcutSettings, outcome: Outcome, interval: Interval | None,
                 elapsed_s: float, invocations: int = 1) -> str:
    results = outcome.results
    cue = ", ".join(f"{color} moves {direction}" for direction, color in settings.cue.items())
    scene = settings.scene
    lines = [
        "# Shortcut lab: does correctness-only RL keep a visual shortcut that CRPO removes?",
        "",
        f"Clips: one object moving left or right, {scene.size}x{scene.size}, {scene.n_frames} frames; the question "
        "never names the colour. RL clips carry a visual cue "
        f"({cue}); the test split ({settings.test_pairs} pairs) has cue colours only, each pair one clip where the "
        "colour agrees with the motion and one where it conflicts. Shortcut rate: share of conflicting test clips "
        "answered with the colour's direction. `P-Acc, other colours`: pairs in colours never used as cues "
        f"({settings.other_pairs} pairs), where the colour says nothing.",
        "",
        f"Model {settings.model}. Control: sft, {settings.control_steps} updates x {settings.sft_batch} questions, "
        f"lr {settings.sft_lr:g}, on both clips of {settings.control_pairs} decorrelated pairs, seeds "
        f"0..{settings.seeds - 1}. Warm start: the control of seed 0, then {settings.cue_steps} sft updates on "
        f"both clips of {settings.cue_pairs} cue-colour pairs labelled with the colour's direction. RL: "
        f"{settings.rl_steps} updates x {settings.rl_batch} questions, lr {settings.rl_lr:g}, beta {settings.beta:g}, "
        f"{2 * settings.group_size} rollouts per question for every algorithm (one-branch algorithms G="
        f"{2 * settings.group_size}; two-branch G={settings.group_size} per branch), on the originals of "
        f"{settings.rl_pairs} cued pairs with static colour questions at {settings.static_share:.0%} of the questions, "
        f"seeds 0..{settings.seeds - 1}"
        + (f", reward weights {settings.rewards.model_dump()}" if settings.rewards != type(settings.rewards)() else "")
        + (f", advantage {settings.advantage}" if settings.advantage != "per_branch" else "") + ".",
        "",
        "## Mean over seeds (± standard deviation), test split",
        "",
        "| policy | " + " | ".join(label for _, label in TABLE) + " |",
        "| --- |" + " --- |" * len(TABLE),
    ]
    policies = ["control", "warm-start", *settings.algos]
    for policy in policies:
        if any(r.policy == policy for r in results):
            cells = [_cell(mean_of(results, policy, m), spread_of(results, policy, m)) for m, _ in TABLE]
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets (fixed before the runs)", ""]
    lines += [f"- {line}" for line in target_lines(results, interval, outcome.control_passed)]
    if outcome.control_passed:
        lines += ["", "## Training diagnostics (mean over seeds: first 10 updates -> last 10)", "",
                  "| algorithm | " + " | ".join(label for _, label in DIAGNOSTICS) + " |",
                  "| --- |" + " --- |" * len(DIAGNOSTICS)]
        lines += training_rows(out, settings)
        lines += ["", "Reward spread: standard deviation of the reward within a group, mean over groups; a group "
                  "whose rollouts all earn the same reward has no advantage to learn from."]
    lines += ["", "## Every policy", "", "| policy | seed | Acc | P-Acc | shortcut rate | P-Acc, other colours | "
              "single-frame P-Acc | shuffled P-Acc |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r.policy} | {'' if r.seed is None else r.seed} | {_cell(r.acc)} | {_cell(r.p_acc)} | "
                     f"{_cell(r.shortcut_rate)} | {_cell(r.other_p_acc)} | {_cell(r.single_frame_p_acc)} | "
                     f"{_cell(r.shuffled_p_acc)} |")
    runs = "one invocation" if invocations == 1 else f"{invocations} invocations (finished stages are reused)"
    lines += ["", f"Wall time: {elapsed_s / 60:.1f} min over {runs}. Curves: `curves.png`; every number: "
              "`results.csv`; the policies side by side: `leaderboard.md`.", ""]
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


def plot_curves(out: Path, settings: ShortcutSettings, warm_point: CurvePoint | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dybench.lab.shortcut import CURVE, read_curve, run_name

    figure, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    smooth = max(1, settings.rl_steps // 15)
    for ax, metric, title in ((axes[0][0], "p_acc", "test P-Acc (cue colours)"),
                              (axes[0][1], "shortcut_rate", "test shortcut rate (conflicting clips)")):
        for algo in settings.algos:
            curves = []
            for seed in range(settings.seeds):
                points = read_curve(out / "runs" / run_name(algo, seed) / CURVE)
                start = [(0, getattr(warm_point, metric))] if warm_point is not None else []
                curves.append(start + [(p.step, getattr(p, metric)) for p in points])
            curves = [[(s, v) for s, v in c if v is not None] for c in curves]
            curves = [c for c in curves if c]
            if not curves:
                continue
            steps, mean = _mean_series(curves)
            ax.plot(steps, mean, marker="o", color=COLOURS.get(algo), label=f"{algo} (mean of {len(curves)})")
            for one in curves:
                ax.plot([s for s, _ in one], [v for _, v in one], color=COLOURS.get(algo), alpha=0.25, linewidth=0.8)
        ax.set_title(title, fontsize=10)
    panels = ((axes[0][2], ("acc/orig", "acc/cf"), "train accuracy: original (-), counterfactual (--)"),
              (axes[1][0], ("answer_change_rate",), "answer-change rate on counterfactual rollouts"),
              (axes[1][1], ("reward_std/orig", "reward_std/cf"), "reward spread in a group: original (-), cf (--)"))
    for ax, keys, title in panels:
        for key, style in zip(keys, ("-", "--")):
            for algo in settings.algos:
                series = _training_series(out, algo, settings.seeds, key)
                if series:
                    ax.plot(*_mean_series(series, smooth), style, color=COLOURS.get(algo),
                            label=algo if style == "-" or len(keys) == 1 else None)
        ax.set_title(title, fontsize=10)
    axes[1][2].axis("off")
    axes[1][2].text(0.0, 0.9, "x: RL update. Test curves start at the warm start (update 0);\n"
                    "training curves are a moving average of the mean over seeds.\n"
                    "GRPO rolls out the original branch only (no cf curves).", fontsize=9, va="top")
    for ax in (axes[0][0], axes[0][1], axes[0][2], axes[1][0], axes[1][1]):
        ax.set_xlabel("RL update")
        ax.set_ylim(-0.05, 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    figure.suptitle("Shortcut lab: RL from a warm start that prefers the colour (mean over seeds)", fontsize=11)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
