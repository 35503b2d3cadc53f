"""Figures: learning curves, kappa/lambda_clip sensitivity, performance profile (PNG, Agg)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines that run this

import matplotlib.pyplot as plt  # after matplotlib.use: the backend is fixed first
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from scipy import stats as scipy_stats

from analysis.paper_numbers import paper_number
from analysis.stats import CONFIDENCE, common_run_matrix, performance_profiles, stopped_early

SCORE_LABEL = "normalised score (0 = random, 100 = expert)"
DPI = 120


def _grid(count: int) -> tuple[plt.Figure, list[Axes]]:
    columns = min(3, max(1, count))
    rows = math.ceil(count / columns)
    # Constrained layout keeps labels, suptitle and a shared colour bar from overlapping.
    # At least 8 inches wide, so a one-task figure still fits its title and legend.
    figure, axes = plt.subplots(
        rows, columns, figsize=(max(8.0, 5.2 * columns), 3.9 * rows + 0.6), squeeze=False,
        layout="constrained",
    )
    flat = list(axes.ravel())
    for extra in flat[count:]:
        extra.set_visible(False)
    return figure, flat[:count]


def _steps_formatter(value: float, _position: int) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _mean_and_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and a t-based CI of the mean over seeds (the band is empty for one seed)."""
    values = values[np.isfinite(values)]
    mean = float(np.mean(values))
    if values.size < 2:
        return mean, mean, mean
    half = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, values.size - 1) * scipy_stats.sem(values)
    return mean, mean - half, mean + half


def plot_learning_curves(
    results: pd.DataFrame,
    table_runs: pd.DataFrame,
    path: Path,
    behaviour: dict[str, float] | None = None,
) -> bool:
    """Per task: every seed (thin), the mean over seeds and its 95% CI band, vs gradient steps.

    Uses the runs the tables report (the confirmation seeds); ``behaviour``: the data's
    behaviour policy per task, drawn dotted. Returns False if no data.
    """
    curves = results[results["trial_id"].isin(table_runs["trial_id"])]
    # Only fresh evaluations: the rows in between repeat the last one.
    curves = curves[curves["evaluated"].astype(bool)].dropna(subset=["normalized_score"])
    tasks = sorted(curves["task"].unique())
    if not tasks:
        return False
    figure, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        task_rows = curves[curves["task"] == task]
        x_column = (
            "num_gradient_steps" if task_rows["num_gradient_steps"].notna().all() else "iteration"
        )
        for _trial, run in task_rows.groupby("trial_id"):
            run = run.sort_values(x_column)
            ax.plot(run[x_column], run["normalized_score"], color="C0", alpha=0.25, lw=0.8)
        points = []
        for x, at_x in task_rows.groupby(x_column):
            mean, low, high = _mean_and_ci(at_x["normalized_score"].to_numpy(dtype=float))
            points.append((x, mean, low, high))
        xs, means, lows, highs = (np.array(v) for v in zip(*points, strict=True))
        seeds = task_rows["trial_id"].nunique()
        ax.plot(xs, means, color="C0", lw=2, label=f"mean over {seeds} seed(s)")
        if seeds > 1:
            ax.fill_between(xs, lows, highs, color="C0", alpha=0.2, label="95% CI of the mean")
        paper = paper_number(task)
        if paper is not None:
            ax.axhline(paper.mean, color="C3", ls="--", lw=1.2, label="paper (best-of-run)")
        if behaviour and task in behaviour:
            ax.axhline(behaviour[task], color="0.3", ls=":", lw=1.5, label="data's behaviour")
        ax.set_title(task)
        if x_column == "num_gradient_steps":
            ax.set_xlabel("gradient steps")
            ax.xaxis.set_major_formatter(FuncFormatter(_steps_formatter))
        else:
            ax.set_xlabel("training iteration")
        ax.set_ylabel("normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    figure.suptitle(f"Learning curves\n{SCORE_LABEL}; thin lines: single seeds")
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return True


def _scale_for(values: np.ndarray) -> tuple[str, dict[str, float]]:
    """log where the positive values span a decade or more; symlog if zero is among them."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if positive.size < 2 or (finite < 0).any() or positive.max() / positive.min() < 10:
        return "linear", {}
    if (finite == 0).any():
        return "symlog", {"linthresh": float(positive.min()), "linscale": 0.5}
    return "log", {}


def _log_ticks(values: np.ndarray) -> list[float]:
    """1-2-5 ticks spanning the positive values (only decades when that is too many)."""
    positive = values[np.isfinite(values) & (values > 0)]
    low, high = float(positive.min()), float(positive.max())
    for multiples in ((1, 2, 5), (1, 3), (1,)):
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
            for m in multiples
            if low / 1.5 <= m * 10.0**e <= high * 1.5
        ]
        if len(ticks) <= 7:
            return ticks
    return ticks


def _apply_scale(ax: Axes, axis: str, values: np.ndarray, label: str) -> None:
    """Scale one axis for ``values`` (all tasks' values, so every panel matches)."""
    scale, options = _scale_for(values)
    if scale == "log":
        label += " (log)"
    elif scale == "symlog":
        label += f" (log; linear below {options['linthresh']:.2g})"
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    (ax.set_xscale if axis == "x" else ax.set_yscale)(scale, **options)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if scale != "linear":
        # Plain-number ticks at 1-2-5 steps: a range under two decades would otherwise get
        # a single labelled tick, and labelled minor ticks collide.
        ticks = _log_ticks(values)
        if scale == "symlog":
            ticks = [0.0, *ticks]
        target.set_major_locator(FixedLocator(ticks))
        target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        target.set_minor_formatter(NullFormatter())
    set_limits = ax.set_xlim if axis == "x" else ax.set_ylim
    if scale == "symlog":
        # Nothing is negative: start just below zero so no empty negative decade shows.
        set_limits(-0.3 * options["linthresh"], float(np.nanmax(values)) * 2)
    elif scale == "log":
        # The same limits in every panel, so positions compare across tasks.
        set_limits(float(np.nanmin(values)) / 1.4, float(np.nanmax(values)) * 1.4)


def plot_sensitivity(summary: pd.DataFrame, best: pd.DataFrame, path: Path) -> bool:
    """Per task: search-phase trials in the (kappa, lambda_clip) plane, coloured by score.

    Colour is the best-of-run score; hollow markers are trials that stopped before the
    full budget (ASHA), the star is ``best``'s trial of the task (the best final score:
    the configuration the confirmation phase runs).
    """
    search = summary[summary["phase"] == "search"].dropna(subset=["kappa", "lambda_clip"])
    tasks = sorted(search["task"].unique())
    if not tasks:
        return False
    figure, axes = _grid(len(tasks))
    low = float(np.nanmin(search["best_score"]))
    high = float(np.nanmax(search["best_score"]))
    norm = matplotlib.colors.Normalize(vmin=low, vmax=high if high > low else low + 1)
    cmap = matplotlib.colormaps["viridis"]
    any_stopped = False
    for ax, task in zip(axes, tasks, strict=True):
        trials = search[search["task"] == task]
        early = stopped_early(trials)
        full, stopped = trials[~early], trials[early]
        if full.empty:  # nothing ran the whole budget: show them all as filled markers
            full, stopped = trials, trials.iloc[0:0]
        any_stopped = any_stopped or len(stopped) > 0
        ax.scatter(
            full["kappa"], full["lambda_clip"], c=full["best_score"], cmap=cmap, norm=norm,
            s=60, edgecolors="black", linewidths=0.5, zorder=3,
        )
        if len(stopped):
            ax.scatter(
                stopped["kappa"], stopped["lambda_clip"], s=60, facecolors="none",
                edgecolors=cmap(norm(stopped["best_score"].to_numpy())), linewidths=1.5,
                zorder=3,
            )
        pick = best[best["task"] == task]
        if len(pick):
            ax.scatter(
                pick["kappa"], pick["lambda_clip"], marker="*", s=300, facecolors="none",
                edgecolors="red", linewidths=1.5, zorder=4,
            )
        _apply_scale(ax, "x", search["kappa"].to_numpy(dtype=float), "kappa")
        _apply_scale(ax, "y", search["lambda_clip"].to_numpy(dtype=float), "lambda_clip")
        ax.set_title(f"{task} ({len(trials)} trials)")
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], ls="", marker="o", color="grey", markeredgecolor="black",
               label="ran the full search budget"),
        Line2D([], [], ls="", marker="*", markersize=14, markerfacecolor="none",
               markeredgecolor="red", label="chosen: best final score"),
    ]
    if any_stopped:
        handles.insert(1, Line2D([], [], ls="", marker="o", markerfacecolor="none",
                                 markeredgecolor="grey", label="stopped early by ASHA"))
    figure.legend(handles=handles, loc="outside lower center",
                  ncols=len(handles) if len(tasks) > 1 else 1)
    figure.colorbar(
        matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes,
        label="best-of-run normalised score",
    )
    figure.suptitle(
        "Search phase: score over kappa (diffusion-loss constraint)\n"
        "and lambda_clip (lower clamp of the Lagrange multiplier)"
    )
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return True


def plot_performance_profile(
    table_runs: pd.DataFrame, path: Path, reps: int = 2000, seed: int = 0
) -> tuple[bool, int]:
    """rliable score distributions over tasks for final and best-of-run scores.

    Returns (written, runs per task used).
    """
    final, tasks = common_run_matrix(table_runs, "final_score")
    best, _ = common_run_matrix(table_runs, "best_score")
    if final.size == 0:
        return False, 0
    top = max(100.0, float(np.nanmax(best)) * 1.05)
    # Start below the lowest score so every profile starts at 1 ("score > tau" is strict).
    bottom = min(0.0, float(np.nanmin(final)), float(np.nanmin(best))) - 1.0
    tau = np.linspace(bottom, top, 201)
    profiles, cis = performance_profiles(
        {"best-of-run": best, "final": final}, tau, reps=reps, seed=seed
    )
    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for colour, label in (("C0", "best-of-run"), ("C1", "final")):
        ax.plot(tau, profiles[label], color=colour, lw=2, label=f"DiffCPS, {label} score")
        ax.fill_between(tau, cis[label][0], cis[label][1], color=colour, alpha=0.2)
    papers = [paper_number(task) for task in tasks]
    if all(p is not None for p in papers):
        # Table 1 has only per-task means: a profile over tasks, not runs, for reference.
        means = np.array([p.mean for p in papers if p is not None])
        ax.plot(tau, (means[None, :] > tau[:, None]).mean(axis=1), color="grey", ls="--",
                lw=1.5, label="paper Table 1 (task means: fraction of tasks)")
    ax.set_xlabel(r"normalised score $\tau$")
    ax.set_ylabel(r"fraction of runs with score > $\tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"Performance profile over {len(tasks)} task(s) x {final.shape[0]} run(s) "
        f"(bands: 95% stratified bootstrap CI)",
        fontsize="medium",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return True, int(final.shape[0])


def plot_rollouts(rollouts: object, path: Path, title: str = "") -> bool:
    """Top-down maze (walls grey) with each episode's x-y path: successes green, failures
    red; a circle marks each start, a star each goal. ``rollouts``: a
    ``diffcps_ray.policy.rollouts.Rollouts``. False (nothing drawn) without episodes."""
    from matplotlib.patches import Rectangle

    episodes = getattr(rollouts, "episodes", [])
    if not episodes:
        return False
    figure, ax = plt.subplots(figsize=(6.4, 6.4), layout="constrained")
    for x, y, half in rollouts.walls:
        ax.add_patch(Rectangle((x - half, y - half), 2 * half, 2 * half,
                               facecolor="0.55", edgecolor="0.35", linewidth=0.5))
    colours = {True: "tab:green", False: "tab:red"}
    for episode in episodes:
        xy = np.asarray(episode.xy)
        colour = colours[bool(episode.success)]
        ax.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=1.0, alpha=0.75)
        ax.plot(*xy[0], marker="o", markersize=6, color=colour, markeredgecolor="black")
        if episode.goal is not None:
            ax.plot(*episode.goal, marker="*", markersize=14, color="gold",
                    markeredgecolor="black")
    successes = sum(bool(e.success) for e in episodes)
    handles = [
        Line2D([], [], color="tab:green", label=f"reached the goal ({successes})"),
        Line2D([], [], color="tab:red", label=f"did not ({len(episodes) - successes})"),
        Line2D([], [], linestyle="none", marker="o", color="0.8", markeredgecolor="black",
               label="start"),
        Line2D([], [], linestyle="none", marker="*", markersize=12, color="gold",
               markeredgecolor="black", label="goal"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2,
              frameon=False)
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or f"{rollouts.task}: {len(episodes)} evaluation episodes")
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return True
