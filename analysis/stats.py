"""Per-run summaries and the paper-style aggregates (mean +- std, IQM with bootstrap CIs).

Definitions used throughout (and stated in report.md):
- final score: the normalised score of a run's last reported result (the last evaluation,
  since results carry the last evaluation forward);
- best-of-run score: the maximum normalised score over the run's reported results, what
  the paper's Table 1 reports;
- std: the sample standard deviation over seeds (ddof=1); undefined (NaN) for one seed;
- IQM: rliable's interquartile mean (scipy trim_mean, 25% cut at each end) with a 95%
  percentile stratified-bootstrap CI over runs (rliable.library.get_interval_estimates).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from rliable import library as rliable_library
from rliable import metrics as rliable_metrics

from analysis.experiment import TRIAL_COLUMNS, Experiment
from analysis.paper_numbers import paper_number

SUITE_AVERAGE_LABEL = "suite average"
CONFIDENCE = 0.95

SUMMARY_COLUMNS = [
    *TRIAL_COLUMNS,
    "status",
    "iterations",
    "num_gradient_steps",
    "final_score",
    "best_score",
    "final_return",
    "final_success_rate",
]


def summarize_runs(experiment: Experiment) -> pd.DataFrame:
    """One row per usable trial: final and best-of-run score (SUMMARY_COLUMNS)."""
    status = {t.trial_id: t.status for t in experiment.trials if t.usable}
    results = experiment.results[experiment.results["trial_id"].isin(status)]
    rows = []
    for trial_id, group in results.groupby("trial_id", sort=False):
        group = group.sort_values("iteration", kind="stable")
        evaluated = group[group["evaluated"].astype(bool)].dropna(subset=["normalized_score"])
        scores = evaluated["normalized_score"].to_numpy(dtype=float)
        last = evaluated.iloc[-1] if len(evaluated) else group.iloc[-1]
        first = group.iloc[0]
        rows.append(
            {
                "suite": first["suite"],
                "task": first["task"],
                "phase": first["phase"],
                "trial_id": trial_id,
                "kappa": first["kappa"],
                "lambda_clip": first["lambda_clip"],
                "seed": first["seed"],
                "variant": first["variant"],
                "status": status[str(trial_id)],
                "iterations": int(group["iteration"].max()),
                "num_gradient_steps": group["num_gradient_steps"].max(),
                "final_score": float(last["normalized_score"]),
                "best_score": float(np.max(scores)) if scores.size else math.nan,
                "final_return": float(last["episode_return_mean"]),
                "final_success_rate": float(last["success_rate"]),
            }
        )
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["seed"] = summary["seed"].astype("Int64")
    return summary


def _recorded_best(manifest: dict[str, Any] | None, task: str) -> str | None:
    """The trial id the tune command chose for the confirmation phase, if it recorded one."""
    try:
        best = manifest["phases"]["search"]["tasks"][task]["best"]  # type: ignore[index]
        return str(best["trial_id"])
    except (KeyError, TypeError):
        return None


def best_search_configs(
    summary: pd.DataFrame, manifest: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Per task, the search-phase trial with the highest final score.

    The tune command's own pick (experiment.json phases.search.tasks[task].best) where it
    recorded one; otherwise the same rule: only trials that ran the full length count
    where any did, so a trial that ASHA stopped early is not preferred for a lucky early
    evaluation; ties go to the higher best-of-run score.
    """
    search = summary[summary["phase"] == "search"]
    picks = []
    for task, group in search.groupby("task", sort=True):
        recorded = group[group["trial_id"] == _recorded_best(manifest, str(task))]
        if len(recorded):
            picks.append(recorded.iloc[0])
            continue
        full = group[_ran_full_length(group)]
        if full.empty:  # nothing ran the whole budget: rank them all, as the tune command
            full = group
        ranked = full.sort_values(["final_score", "best_score"], ascending=False, kind="stable")
        picks.append(ranked.iloc[0])
    return pd.DataFrame(picks, columns=summary.columns).reset_index(drop=True)


def _ran_full_length(trials: pd.DataFrame) -> pd.Series:
    """Trials that ran the whole budget: not STOPPED_EARLY, and as long as the longest."""
    longest = trials["iterations"] == trials["iterations"].max()
    return longest & (trials["status"] != "STOPPED_EARLY")


def stopped_early(trials: pd.DataFrame) -> pd.Series:
    """The complement of ``_ran_full_length`` (ASHA-stopped search trials)."""
    return ~_ran_full_length(trials)


def select_table_runs(
    summary: pd.DataFrame, manifest: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The runs the tables report per task, and where they came from.

    The confirmation phase (best config x seeds) where a task has one; otherwise the
    search phase's best trial, so a search-only experiment still gets a table.
    """
    chosen = []
    sources: dict[str, str] = {}
    best = best_search_configs(summary, manifest).set_index("task") if len(summary) else None
    for task, group in summary[summary["phase"] != "ablation"].groupby("task", sort=True):
        confirm = group[group["phase"] == "confirm"]
        if len(confirm):
            chosen.append(confirm)
            sources[task] = "confirm"
        elif best is not None and task in best.index:
            chosen.append(group[group["trial_id"] == best.loc[task, "trial_id"]])
            sources[task] = "search (best trial)"
    if not chosen:
        return summary.iloc[0:0], sources
    return pd.concat(chosen, ignore_index=True), sources


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of the finite values; std is NaN below two values."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return math.nan, math.nan
    std = float(np.std(array, ddof=1)) if array.size > 1 else math.nan
    return float(np.mean(array)), std


@contextlib.contextmanager
def _seeded_numpy_global(seed: int) -> Iterator[None]:
    # rliable's stratified bootstrap draws indices from numpy's global RNG (its
    # random_state argument does not reach them), so seed that and put it back after.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm_with_ci(
    per_task_scores: Sequence[Sequence[float] | np.ndarray],
    reps: int = 10_000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """IQM over all runs of all tasks and its stratified-bootstrap CI: (iqm, low, high).

    ``per_task_scores``: one array of run scores per task. With equal run counts the
    scores form rliable's (runs x tasks) matrix; with unequal counts each task is passed
    as its own array (rliable's independent stratified bootstrap) and pooled for the IQM.
    """
    arrays = [np.asarray(s, dtype=float) for s in per_task_scores]
    arrays = [a[np.isfinite(a)] for a in arrays]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return math.nan, math.nan, math.nan
    data: np.ndarray | list[np.ndarray]
    func: Callable[..., np.ndarray]
    if len({a.size for a in arrays}) == 1:
        data = np.stack(arrays, axis=1)

        def func(matrix: np.ndarray) -> np.ndarray:
            return np.array([rliable_metrics.aggregate_iqm(matrix)])

    else:
        data = [a.reshape(-1, 1) for a in arrays]

        def func(*columns: np.ndarray) -> np.ndarray:
            pooled = np.concatenate([c.ravel() for c in columns])
            return np.array([rliable_metrics.aggregate_iqm(pooled)])

    with _seeded_numpy_global(seed), np.errstate(all="ignore"):
        points, intervals = rliable_library.get_interval_estimates(
            {"scores": data}, func, reps=reps, confidence_interval_size=confidence
        )
    point = float(points["scores"][0])
    low, high = (float(v) for v in np.asarray(intervals["scores"]).reshape(2, -1)[:, 0])
    return point, low, high


def suite_average(task_means: Sequence[float]) -> float:
    """The paper's "Average" row: the mean of the per-task means."""
    return mean_std(task_means)[0]


def _per_seed_suite_std(runs: pd.DataFrame, column: str) -> float:
    """Std over seeds of the per-seed task average, where every task has the same seeds."""
    by_task = {task: set(group["seed"].dropna()) for task, group in runs.groupby("task")}
    seed_sets = list(by_task.values())
    if not seed_sets or any(s != seed_sets[0] for s in seed_sets) or len(seed_sets[0]) < 2:
        return math.nan
    per_seed = runs.groupby("seed")[column].mean()
    return mean_std(per_seed.to_numpy())[1]


TABLE_COLUMNS = [
    "task",
    "source",
    "kappa",
    "lambda_clip",
    "n_seeds",
    "final_mean",
    "final_std",
    "best_mean",
    "best_std",
    "final_iqm",
    "final_iqm_ci_low",
    "final_iqm_ci_high",
    "best_iqm",
    "best_iqm_ci_low",
    "best_iqm_ci_high",
    "paper_best_mean",
    "paper_best_std",
]


def _config_value(values: pd.Series) -> float:
    unique = values.dropna().unique()
    return float(unique[0]) if len(unique) == 1 else math.nan


def _seed_statistics(group: pd.DataFrame) -> dict[str, Any]:
    """One config's runs: its kappa and lambda_clip, seed count, final/best mean and std."""
    final_mean, final_std = mean_std(group["final_score"])
    best_mean, best_std = mean_std(group["best_score"])
    return {
        "kappa": _config_value(group["kappa"]),
        "lambda_clip": _config_value(group["lambda_clip"]),
        "n_seeds": int(group["final_score"].notna().sum()),
        "final_mean": final_mean,
        "final_std": final_std,
        "best_mean": best_mean,
        "best_std": best_std,
    }


def _iqm_columns(
    final_iqm: tuple[float, float, float], best_iqm: tuple[float, float, float]
) -> dict[str, float]:
    """The table's IQM columns from two (point, ci_low, ci_high) triples."""
    return {
        "final_iqm": final_iqm[0],
        "final_iqm_ci_low": final_iqm[1],
        "final_iqm_ci_high": final_iqm[2],
        "best_iqm": best_iqm[0],
        "best_iqm_ci_low": best_iqm[1],
        "best_iqm_ci_high": best_iqm[2],
    }


def results_table(
    runs: pd.DataFrame, sources: dict[str, str], reps: int = 10_000, seed: int = 0
) -> pd.DataFrame:
    """Per task and suite average: final and best-of-run mean +- std, IQM [CI], paper."""
    rows = []
    for task, group in runs.groupby("task", sort=True):
        final_iqm = iqm_with_ci([group["final_score"]], reps=reps, seed=seed)
        best_iqm = iqm_with_ci([group["best_score"]], reps=reps, seed=seed)
        paper = paper_number(str(task))
        rows.append(
            {
                "task": task,
                "source": sources.get(str(task), ""),
                **_seed_statistics(group),
                **_iqm_columns(final_iqm, best_iqm),
                "paper_best_mean": paper.mean if paper else math.nan,
                "paper_best_std": paper.std if paper else math.nan,
            }
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if len(table) > 1:
        tasks = list(table["task"])
        final_iqm = iqm_with_ci(
            [runs.loc[runs["task"] == t, "final_score"] for t in tasks], reps=reps, seed=seed
        )
        best_iqm = iqm_with_ci(
            [runs.loc[runs["task"] == t, "best_score"] for t in tasks], reps=reps, seed=seed
        )
        paper_means = table["paper_best_mean"]
        average = {
            "task": SUITE_AVERAGE_LABEL,
            "source": "",
            "kappa": math.nan,
            "lambda_clip": math.nan,
            "n_seeds": int(table["n_seeds"].min()),
            "final_mean": suite_average(table["final_mean"]),
            "final_std": _per_seed_suite_std(runs, "final_score"),
            "best_mean": suite_average(table["best_mean"]),
            "best_std": _per_seed_suite_std(runs, "best_score"),
            **_iqm_columns(final_iqm, best_iqm),
            # Averaged over the same tasks, and only where the paper has every one of them.
            "paper_best_mean": (
                suite_average(paper_means) if paper_means.notna().all() else math.nan
            ),
            "paper_best_std": math.nan,
        }
        table = pd.concat([table, pd.DataFrame([average])], ignore_index=True)
    return table


def common_run_matrix(runs: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str]]:
    """(runs x tasks) matrix for rliable, using the first k seeds of every task.

    rliable's profiles need a rectangular matrix; k is the smallest number of runs any
    task has, so a task with a failed seed shortens every column instead of crashing.
    """
    tasks = sorted(runs["task"].unique())
    columns = []
    for task in tasks:
        group = runs[runs["task"] == task].sort_values("seed", kind="stable")
        values = group[column].to_numpy(dtype=float)
        columns.append(values[np.isfinite(values)])
    if not columns:
        return np.zeros((0, 0)), tasks
    k = min(c.size for c in columns)
    return np.stack([c[:k] for c in columns], axis=1), tasks


def performance_profiles(
    score_matrices: dict[str, np.ndarray], tau_list: np.ndarray, reps: int = 2000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's score-distribution profiles with their stratified-bootstrap CIs."""
    with _seeded_numpy_global(seed), np.errstate(all="ignore"):
        return rliable_library.create_performance_profile(score_matrices, tau_list, reps=reps)


ABLATION_COLUMNS = [
    "task", "variant", "kappa", "lambda_clip", "n_seeds",
    "final_mean", "final_std", "best_mean", "best_std",
]


def ablation_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Ablation phase: per task and varied setting, final and best-of-run mean +- std."""
    ablation = summary[summary["phase"] == "ablation"]
    rows = []
    for (task, variant), group in ablation.groupby(["task", "variant"], sort=True):
        rows.append({"task": task, "variant": variant, **_seed_statistics(group)})
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)
