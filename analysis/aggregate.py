"""python -m analysis.aggregate RUN_DIR [--out DIR]: an experiment -> paper tables and figures.

Reads an experiment directory of ``python -m diffcps_ray.tune`` (no Ray needed) and writes,
into --out (default RUN_DIR/analysis):

    results.csv                 tidy: one row per reported result of every trial
    report.md                   settings, main table, best configs, figures, failed trials
    tables/results.{md,csv}     per task + suite average: final and best-of-run
                                mean ± std, IQM [95% CI], paper's Table 1
    tables/runs.csv             the runs behind the table (one row per seed)
    tables/search.{md,csv}      every search-phase trial: kappa, lambda_clip, scores
    figures/learning_curves.png, figures/sensitivity.png, figures/performance_profile.png
    figures/rollouts_<task>.png  maze tasks: paths of the best confirmed policy's episodes

Everything is written into a temporary sibling directory that replaces --out at the end,
so a failure leaves the previous output (or nothing) in place.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.experiment import Experiment, TrialInfo, load_experiment
from analysis.paper_numbers import PAPER_SOURCE, PAPER_SUITE_AVERAGE, paper_number
from analysis.stats import (
    CONFIDENCE,
    SUITE_AVERAGE_LABEL,
    ablation_table,
    best_search_configs,
    results_table,
    select_table_runs,
    summarize_runs,
)
from diffcps_ray.atomic import replace_dir
from diffcps_ray.cli import PlainArgumentParser, non_negative_int, positive_int, run_main
from diffcps_ray.errors import DiffCPSError
from diffcps_ray.results import metric_value, score_summary

DEFAULT_REPS = 10_000
PROFILE_REPS = 2_000
DEFAULT_ROLLOUT_EPISODES = 10
MAZE_FAMILIES = ("pointmaze", "antmaze")


@dataclass
class Analysis:
    """Everything computed from one experiment, before it is written."""

    experiment: Experiment
    summary: pd.DataFrame  # one row per usable trial
    table_runs: pd.DataFrame  # the runs the main table reports
    sources: dict[str, str]  # task -> "confirm" | "search (best trial)"
    table: pd.DataFrame  # stats.TABLE_COLUMNS
    search_best: pd.DataFrame
    ablation: pd.DataFrame  # stats.ABLATION_COLUMNS; empty without an ablation phase
    reps: int
    seed: int
    rollout_episodes: int = DEFAULT_ROLLOUT_EPISODES


def analyse(experiment: Experiment, reps: int = DEFAULT_REPS, seed: int = 0) -> Analysis:
    """Summaries and tables (no files)."""
    summary = summarize_runs(experiment)
    table_runs, sources = select_table_runs(summary, experiment.manifest)
    table = results_table(table_runs, sources, reps=reps, seed=seed)
    return Analysis(
        experiment=experiment,
        summary=summary,
        table_runs=table_runs,
        sources=sources,
        table=table,
        search_best=best_search_configs(summary, experiment.manifest),
        ablation=ablation_table(summary),
        reps=reps,
        seed=seed,
    )


# --- formatting --------------------------------------------------------------------------


def _number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _config_number(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):g}"


def _mean_pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.1f} ± {std:.1f}" if not math.isnan(std) else f"{mean:.1f}"


def _iqm_ci(point: float, low: float, high: float) -> str:
    if math.isnan(point):
        return "–"
    return f"{point:.1f} [{low:.1f}, {high:.1f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; "|" inside cells is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(header), line(["---"] * len(header))]
    out.extend(line(row) for row in rows)
    return "\n".join(out) + "\n"


def results_markdown(table: pd.DataFrame) -> str:
    """The main table: final and best-of-run, labelled, with the paper's number beside."""
    header = [
        "task",
        "seeds",
        "final score (mean ± std)",
        "best-of-run (mean ± std)",
        f"final IQM [{CONFIDENCE:.0%} CI]",
        f"best-of-run IQM [{CONFIDENCE:.0%} CI]",
        "paper, best-of-run (Table 1)",
    ]
    rows = []
    for record in table.to_dict("records"):
        paper = (
            _mean_pm(record["paper_best_mean"], record["paper_best_std"])
            if not math.isnan(record["paper_best_mean"])
            else "–"
        )
        task = record["task"]
        rows.append(
            [
                f"**{task}**" if task == SUITE_AVERAGE_LABEL else task,
                str(record["n_seeds"]),
                _mean_pm(record["final_mean"], record["final_std"]),
                _mean_pm(record["best_mean"], record["best_std"]),
                _iqm_ci(*(record[f"final_iqm{s}"] for s in ("", "_ci_low", "_ci_high"))),
                _iqm_ci(*(record[f"best_iqm{s}"] for s in ("", "_ci_low", "_ci_high"))),
                paper,
            ]
        )
    return markdown_table(header, rows)


def search_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every search-phase trial, best first within each task."""
    search = summary[summary["phase"] == "search"]
    columns = ["task", "trial_id", "kappa", "lambda_clip", "seed", "status", "iterations",
               "num_gradient_steps", "final_score", "best_score"]
    return search.sort_values(
        ["task", "final_score", "best_score"], ascending=[True, False, False], kind="stable"
    )[columns].reset_index(drop=True)


def ablation_markdown(ablation: pd.DataFrame) -> str:
    header = ["task", "variant", "kappa", "lambda_clip", "seeds", "final score (mean ± std)",
              "best-of-run (mean ± std)"]
    rows = [
        [r["task"], r["variant"], _config_number(r["kappa"]), _config_number(r["lambda_clip"]),
         str(r["n_seeds"]), _mean_pm(r["final_mean"], r["final_std"]),
         _mean_pm(r["best_mean"], r["best_std"])]
        for r in ablation.to_dict("records")
    ]
    return markdown_table(header, rows)


def search_markdown(search: pd.DataFrame) -> str:
    header = ["task", "trial", "kappa", "lambda_clip", "status", "iterations", "gradient steps",
              "final score", "best-of-run"]
    rows = [
        [r["task"], r["trial_id"], _config_number(r["kappa"]), _config_number(r["lambda_clip"]),
         r["status"], str(r["iterations"]), _number(r["num_gradient_steps"], 0),
         _number(r["final_score"]), _number(r["best_score"])]
        for r in search.to_dict("records")
    ]
    return markdown_table(header, rows)


# --- report ------------------------------------------------------------------------------


def final_score_lines(analysis: Analysis) -> list[str]:
    """Per task of the main table: final score over seeds, its noise and the behaviour's.

    The evaluation noise of a seed is its last evaluation's episode spread over
    sqrt(episodes); the behaviour score is the one the tune command recorded.
    """
    results = analysis.experiment.results
    last = (
        results[results["evaluated"].astype(bool)]
        .dropna(subset=["normalized_score"])
        .sort_values("iteration")
        .groupby("trial_id")
        .tail(1)
        .set_index("trial_id")
    )
    behaviour = analysis.experiment.behaviour_scores
    lines = []
    for task, runs in analysis.table_runs.groupby("task", sort=True):
        scores = runs["final_score"].dropna()
        if scores.empty:
            continue
        final = last.reindex(runs.loc[scores.index, "trial_id"])
        noise = (final["normalized_score_std"] / np.sqrt(final["evaluation_episodes"])).dropna()
        episodes = final["evaluation_episodes"].dropna().unique()
        summary = score_summary(
            scores.tolist(),
            noise.tolist(),
            int(episodes[0]) if len(episodes) == 1 else None,
            behaviour.get(str(task)),
        )
        lines.append(f"{task}: final normalised score {summary}.")
    return lines


def _evaluation_episodes(experiment: Experiment) -> str:
    """Episodes per evaluation by phase, e.g. "confirm: 50; search: 10"."""
    per_phase = []
    results = experiment.results.dropna(subset=["evaluation_episodes"])
    for phase, rows in results.groupby("phase", sort=True):
        values = ", ".join(f"{v:g}" for v in sorted(rows["evaluation_episodes"].unique()))
        per_phase.append(f"{phase}: {values}")
    if per_phase:
        return "; ".join(per_phase)
    # Otherwise the trials' configs (the tune command's run section), where present.
    for name in ("run/eval_episodes", "eval_episodes", "evaluation_duration"):
        values = {
            json.dumps(value)
            for params in experiment.params.values()
            if (value := metric_value(params, name)) is not None
        }
        if values:
            return ", ".join(sorted(values)) + f" (config {name})"
    return "not recorded"


def _trial_counts(trials: list[TrialInfo]) -> list[list[str]]:
    phases = sorted({t.phase for t in trials})
    rows = []
    for phase in phases:
        in_phase = [t for t in trials if t.phase == phase]
        usable = [t for t in in_phase if t.usable]
        tasks = sorted({t.task for t in in_phase})
        rows.append([phase, str(len(in_phase)), str(len(usable)),
                     str(len(in_phase) - len(usable)), ", ".join(tasks)])
    return rows


def _problems_markdown(trials: list[TrialInfo]) -> str:
    bad = [t for t in trials if t.problems]
    if not bad:
        return "None: every trial in experiment.json finished and reported results.\n"
    rows = [
        [t.phase, t.task, t.trial_id, _number(t.seed), t.status, str(t.num_results),
         "; ".join(t.problems), "yes" if t.usable else "no"]
        for t in bad
    ]
    intro = (
        f"{len(bad)} of {len(trials)} trial(s) had a problem. Trials without results or "
        "whose status is neither TERMINATED nor STOPPED_EARLY are left out of the tables "
        "and figures; their reported results, if any, are still in results.csv.\n\n"
    )
    return intro + markdown_table(
        ["phase", "task", "trial", "seed", "status", "results", "problem", "in tables"], rows
    )


def _best_configs_markdown(analysis: Analysis) -> str:
    search_best = analysis.search_best.set_index("task") if len(analysis.search_best) else None
    rows = []
    for task in sorted(set(analysis.summary["task"])):
        runs = analysis.table_runs[analysis.table_runs["task"] == task]
        row = analysis.table[analysis.table["task"] == task]
        reported = (
            f"kappa={_config_number(row['kappa'].iloc[0])}, "
            f"lambda_clip={_config_number(row['lambda_clip'].iloc[0])}"
            if len(row) else "–"
        )
        if search_best is not None and task in search_best.index:
            pick = search_best.loc[task]
            searched = (
                f"kappa={_config_number(pick['kappa'])}, "
                f"lambda_clip={_config_number(pick['lambda_clip'])} "
                f"(final {_number(pick['final_score'])}, best-of-run {_number(pick['best_score'])})"
            )
        else:
            searched = "no search trials"
        seeds = ", ".join(str(s) for s in sorted(runs["seed"].dropna()))
        rows.append([task, searched, reported, analysis.sources.get(task, "–"), seeds or "–"])
    return markdown_table(
        ["task", "search phase: best final score", "config in the table", "table runs from",
         "seeds"],
        rows,
    )


def _compact(value: Any, nested: bool = False) -> str:
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_compact(v, nested=True)}" for k, v in value.items())
        return f"({text})" if nested else text
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v, nested=True) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# Per-task search state worth showing; the best pick has its own section.
_SEARCH_TASK_KEYS = ("status", "paper", "ranges")


def _phase_settings(manifest: dict[str, Any]) -> list[list[str]]:
    """One row per phase setting; the per-task search state gets its own rows."""
    rows = []
    phases = manifest.get("phases")
    if not isinstance(phases, dict):
        return rows
    for phase, settings in phases.items():
        if not isinstance(settings, dict):
            rows.append([f"{phase} phase", _compact(settings)])
            continue
        for key, value in settings.items():
            if key == "tasks" and isinstance(value, dict):
                for task, state in value.items():
                    shown = (
                        {k: state[k] for k in _SEARCH_TASK_KEYS if k in state}
                        if isinstance(state, dict) else state
                    )
                    rows.append([f"{phase} phase: {task}", _compact(shown)])
            else:
                rows.append([f"{phase} phase: {key}", _compact(value)])
    options = manifest.get("options")
    if isinstance(options, dict):
        rows.append(["command options", _compact(options)])
    return rows


def report_markdown(analysis: Analysis, figures: dict[str, str], out_dir: Path) -> str:
    """report.md: what was run, the main table, best configs, figures, problems."""
    experiment = analysis.experiment
    manifest = experiment.manifest
    summary = analysis.summary
    steps = summary["num_gradient_steps"].dropna()
    settings = [
        ["experiment directory", f"`{experiment.run_dir.resolve()}`"],
        ["suite", str(manifest.get("suite", "–"))],
        ["budget", str(manifest.get("budget", "–"))],
        ["created", str(manifest.get("created", "–"))],
        ["command", f"`{manifest.get('command', '–')}`"],
        *_phase_settings(manifest),
        ["tasks", ", ".join(sorted({t.task for t in experiment.trials})) or "–"],
        ["gradient steps per run (longest)", _number(steps.max() if len(steps) else None, 0)],
        ["evaluation episodes per evaluation", _evaluation_episodes(experiment)],
        ["bootstrap", f"{analysis.reps} stratified resamples, percentile {CONFIDENCE:.0%} CI, "
                      f"numpy seed {analysis.seed}"],
        ["regenerate", f"`python -m analysis.aggregate {experiment.run_dir} --out {out_dir}`"],
    ]
    v2_antmaze = [
        t for t in analysis.table["task"]
        if (p := paper_number(str(t))) is not None and p.dataset_version != str(t)[-2:]
    ]
    parts = [
        f"# DiffCPS results: {experiment.name}\n\n",
        "Generated by `python -m analysis.aggregate` from the experiment's `experiment.json` "
        "and Tune's trial directories.\n",
        "\n## Settings\n\n",
        markdown_table(["setting", "value"], settings),
        "\n### Trials\n\n",
        markdown_table(["phase", "trials", "in tables", "left out", "tasks"],
                       _trial_counts(experiment.trials)),
        "\n## Results\n\n",
        "Normalised score: 100 * (return - random) / (expert - random). **Final** = the last "
        "evaluation of a run; **best-of-run** = the best evaluation over the run (what the "
        "paper's Table 1 reports). Mean ± sample std over seeds (ddof=1; no std for one "
        "seed). IQM = interquartile mean over runs (rliable; with fewer than 4 runs it "
        f"trims nothing and equals the mean) with a {CONFIDENCE:.0%} stratified bootstrap CI. "
        "The suite average is the mean of the task means (as in the paper); its std is "
        "over seeds of the per-seed task average, given only when every task has the same "
        "seeds; its IQM pools all runs of all tasks. The paper column's suite average is "
        "the mean of the paper's numbers for these same tasks, given only when the paper "
        "has all of them.\n\n",
    ]
    if len(analysis.table):
        parts.append(results_markdown(analysis.table))
        parts.append(
            "\nFinal scores with their noise (and, where the suite measured it, against the "
            "policy that generated the data):\n\n"
            + "".join(f"- {line}\n" for line in final_score_lines(analysis))
        )
    else:
        parts.append("No trial finished with results, so there is no table.\n")
    missing_tasks = sorted({t.task for t in experiment.trials} - set(analysis.table["task"]))
    if missing_tasks:
        parts.append(
            f"\nNo finished run, so no row: {', '.join(missing_tasks)} (see Missing or "
            "failed trials).\n"
        )
    parts.append(f"\nPaper: {PAPER_SOURCE}; – where the paper has no such task.")
    if experiment.suite in PAPER_SUITE_AVERAGE:
        parts.append(
            f" Table 1's own {experiment.suite} average, over all its "
            f"{experiment.suite} tasks: {PAPER_SUITE_AVERAGE[experiment.suite]}."
        )
    parts.append("\n")
    if v2_antmaze:
        parts.append(
            f"The paper ran AntMaze on D4RL's v0 datasets; {', '.join(v2_antmaze)} use v2, so "
            "their paper column is the v0 number.\n"
        )
    parts += [
        "\nTables: [results.md](tables/results.md), [results.csv](tables/results.csv), "
        "[runs.csv](tables/runs.csv) (the runs behind the table), "
        "[search.md](tables/search.md) / [search.csv](tables/search.csv) (every search "
        "trial); tidy per-result data: [results.csv](results.csv).\n",
        "\n## Best configuration per task\n\n",
        "No finished trials.\n" if analysis.summary.empty else _best_configs_markdown(analysis),
    ]
    if len(analysis.ablation):
        parts += [
            "\n## Ablation\n\n",
            "Each setting at the paper's kappa and lambda_clip, over seeds "
            "([ablation.csv](tables/ablation.csv)).\n\n",
            ablation_markdown(analysis.ablation),
        ]
    parts.append("\n## Figures\n")
    captions = {
        "learning_curves": "Learning curves of the runs in the table: mean over seeds with "
        f"its {CONFIDENCE:.0%} CI (t distribution), single seeds as thin lines, the paper's "
        "best-of-run number dashed, the data's behaviour policy dotted where measured.",
        "sensitivity": "Search phase: each trial at its (kappa, lambda_clip), coloured by its "
        "best-of-run score; hollow = stopped early by the scheduler; star = best final score.",
        "performance_profile": "Performance profile (rliable score distribution): fraction "
        "of runs above each score, final and best-of-run, 95% stratified bootstrap bands; "
        "where every task is in Table 1, the paper's task means as a dashed reference "
        "(a fraction of tasks, since the paper gives no per-run scores).",
    }
    for name, caption in captions.items():
        if name in figures:
            text = f"{caption} {figures[name]}".strip()
            parts.append(f"\n### {name.replace('_', ' ')}\n\n{text}\n\n"
                         f"![{name}](figures/{name}.png)\n")
        else:
            parts.append(f"\n### {name.replace('_', ' ')}\n\nNot drawn: no data for it.\n")
    for name, caption in sorted(figures.items()):
        if name.startswith("rollouts_"):
            task = name.removeprefix("rollouts_")
            image = f"\n\n![{name}](figures/{name}.png)" if not caption.startswith("Not") else ""
            parts.append(f"\n### rollouts: {task}\n\n{caption}{image}\n")
    parts += ["\n## Policies\n\n", _policies_markdown(experiment.run_dir)]
    parts += ["\n## Missing or failed trials\n\n", _problems_markdown(experiment.trials)]
    return "".join(parts)


def _policies_markdown(run_dir: Path) -> str:
    """The exported policy directories (``policies/<task>/seed_<k>/{best,final}``)."""
    from diffcps_ray.policy.sources import exported_policies

    exported = exported_policies(run_dir)
    how = (
        f"Evaluate them with `python -m diffcps_ray.evaluate {run_dir}` (the best confirmed "
        "policy of each task; `--task`, `--video FILE`), or load one in Python with "
        "`diffcps_ray.load_policy(DIR)` (docs/policies.md).\n"
    )
    if not exported:
        return "No exported policies in `policies/`. " + how
    rows = []
    for task, directories in sorted(exported.items()):
        for directory in directories:
            try:
                meta = json.loads((directory / "policy.json").read_text())
            except (OSError, ValueError):
                meta = {}
            source = meta.get("provenance") or {}
            rows.append([
                task, str(source.get("seed", "–")), directory.name,
                _number(meta.get("score")), _number(source.get("iteration"), 0),
                str(source.get("trial_id", "–")),
                f"`{directory.relative_to(run_dir).as_posix()}`",
            ])  # fmt: skip
    return how + "\n" + markdown_table(
        ["task", "seed", "checkpoint", "score then", "iteration", "trial", "directory"], rows
    )


def draw_rollouts(run_dir: Path, tasks: list[str], figures_dir: Path, episodes: int,
                  seed: int = 0) -> dict[str, str]:
    """figures/rollouts_<task>.png for every maze task with a confirmed policy.

    Runs ``episodes`` evaluation episodes of the task's best confirmed policy in the
    simulator (no Ray, no data). Returns figure name -> caption ("Not drawn: ..." where a
    policy could not be loaded or run).
    """
    from diffcps_ray.envs.tasks import get_task
    from diffcps_ray.policy.rollouts import collect_rollouts
    from diffcps_ray.policy.sources import find_policies

    maze_tasks = []
    for task in tasks:
        try:
            if get_task(task).family in MAZE_FAMILIES:
                maze_tasks.append(task)
        except DiffCPSError:
            continue
    if not maze_tasks or episodes < 1:
        return {}
    try:
        refs = find_policies(run_dir)
    except DiffCPSError:
        return {}
    from analysis import plots

    captions = {}
    for task in maze_tasks:
        ref = refs.get(task)
        if ref is None or not ref.available:
            continue
        name = f"rollouts_{task}"
        try:
            policy = ref.load("cpu", seed)
            rollouts = collect_rollouts(policy, episodes, seed)
        except DiffCPSError as error:
            captions[name] = f"Not drawn: {error}"
            continue
        plots.plot_rollouts(rollouts, figures_dir / f"{name}.png")
        recorded = "" if policy.score is None else f", score {policy.score:.1f} when saved"
        captions[name] = (
            f"The best confirmed policy ({policy.describe()}{recorded}) seen from above: "
            f"{len(rollouts.episodes)} evaluation episodes (seed {seed}), the path of each "
            f"green where it reached the goal ({rollouts.num_successes}) and red where it did "
            f"not; circle = start, star = goal. Normalised score of these episodes "
            f"{rollouts.result['normalized_score']:.1f}."
        )
    return captions


# --- writing -----------------------------------------------------------------------------


def _write_outputs(analysis: Analysis, target: Path, final_out: Path) -> None:
    tables_dir = target / "tables"
    figures_dir = target / "figures"
    tables_dir.mkdir()
    figures_dir.mkdir()
    analysis.experiment.results.to_csv(target / "results.csv", index=False)
    analysis.table.to_csv(tables_dir / "results.csv", index=False)
    (tables_dir / "results.md").write_text(
        results_markdown(analysis.table) if len(analysis.table) else "No results.\n"
    )
    analysis.table_runs.to_csv(tables_dir / "runs.csv", index=False)
    search = search_table(analysis.summary)
    search.to_csv(tables_dir / "search.csv", index=False)
    (tables_dir / "search.md").write_text(search_markdown(search))
    if len(analysis.ablation):
        analysis.ablation.to_csv(tables_dir / "ablation.csv", index=False)
        (tables_dir / "ablation.md").write_text(ablation_markdown(analysis.ablation))

    # Imported here: matplotlib is only needed once there is something to draw.
    from analysis import plots

    figures: dict[str, str] = {}
    experiment = analysis.experiment
    if plots.plot_learning_curves(
        experiment.results, analysis.table_runs, figures_dir / "learning_curves.png",
        behaviour=experiment.behaviour_scores,
    ):
        figures["learning_curves"] = ""
    if plots.plot_sensitivity(
        analysis.summary, analysis.search_best, figures_dir / "sensitivity.png"
    ):
        figures["sensitivity"] = ""
    drawn, runs_used = plots.plot_performance_profile(
        analysis.table_runs, figures_dir / "performance_profile.png",
        reps=min(PROFILE_REPS, analysis.reps), seed=analysis.seed,
    )
    if drawn:
        figures["performance_profile"] = f"Uses the first {runs_used} run(s) of every task."
    figures.update(draw_rollouts(
        experiment.run_dir, sorted({t.task for t in experiment.trials}), figures_dir,
        analysis.rollout_episodes, analysis.seed,
    ))  # fmt: skip
    (target / "report.md").write_text(report_markdown(analysis, figures, final_out))


def aggregate(
    run_dir: str | Path, out_dir: str | Path | None = None, reps: int = DEFAULT_REPS, seed: int = 0,
    rollout_episodes: int = DEFAULT_ROLLOUT_EPISODES,
) -> Analysis:
    """Read RUN_DIR, write everything into out_dir (default RUN_DIR/analysis).

    ``rollout_episodes``: episodes per maze task in the rollout figures (0: none).
    """
    run_dir = Path(run_dir)
    experiment = load_experiment(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "analysis"
    if out.exists() and not out.is_dir():  # say so before the bootstrap runs
        raise DiffCPSError(f"--out {out} exists and is not a directory.")
    # Progress on stderr: stdout holds the results.
    print(f"[aggregate] {len(experiment.trials)} trial(s) read from {run_dir}; "
          f"bootstrapping the tables ({reps} resamples)", file=sys.stderr, flush=True)
    analysis = analyse(experiment, reps=reps, seed=seed)
    analysis.rollout_episodes = rollout_episodes
    # Written beside ``out`` and swapped in whole: an interrupt leaves the previous report.
    print(f"[aggregate] writing tables, figures and report.md to {out}", file=sys.stderr,
          flush=True)
    replace_dir(out, lambda tmp: _write_outputs(analysis, tmp, out))
    return analysis


def _parser() -> argparse.ArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m analysis.aggregate",
        description="Turn a diffcps_ray.tune experiment into tables, figures and report.md.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="experiment directory (STORAGE/NAME)")
    parser.add_argument("--out", default=None, help="output directory (default RUN_DIR/analysis)")
    parser.add_argument("--reps", type=positive_int, default=DEFAULT_REPS, metavar="N",
                        help=f"bootstrap resamples for the IQM CIs (default {DEFAULT_REPS})")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="bootstrap seed (default 0)")
    parser.add_argument("--rollout-episodes", type=non_negative_int,
                        default=DEFAULT_ROLLOUT_EPISODES,
                        help="episodes drawn per maze task in figures/rollouts_<task>.png "
                             f"(default {DEFAULT_ROLLOUT_EPISODES}; 0: no rollout figures)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out) if args.out else Path(args.run_dir) / "analysis"
    if args.rollout_episodes < 0:
        raise DiffCPSError(f"--rollout-episodes must be 0 or more, not {args.rollout_episodes}.")
    analysis = aggregate(args.run_dir, out, reps=args.reps, seed=args.seed,
                         rollout_episodes=args.rollout_episodes)
    trials = analysis.experiment.trials
    problems = sum(1 for t in trials if t.problems)
    for line in final_score_lines(analysis):
        print(line)
    print(
        f"wrote {out}/report.md: {len(trials)} trial(s), {len(analysis.summary)} in the "
        f"analysis, {problems} with problems."
    )
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")  # NaN-only slices (a task with failed seeds) are reported, not warned
    sys.exit(run_main(main))
