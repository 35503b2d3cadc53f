"""What a sweep prints while it runs and when it ends.

- ``SweepReporter``: the status table every 30 s (Tune's public ProgressReporter), with the
  lambda_clip each trial runs with (the sampled floor of a zero-floor range means 0), the
  best trial so far and the experiment's own directory;
- ``TrialEvents``: one line per trial start, retry and failure (a Tune Callback);
- ``plan_lines``: what a new sweep is about to run;
- ``summarise``: the closing lines per task, scores against the behaviour, with noise.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

from ray.tune import Callback, ProgressReporter

from diffcps_ray.results import finite_number, metric_value, score_summary
from diffcps_ray.tune.adapters import current_driver, error_message
from diffcps_ray.tune.record import (
    CheckpointKind,
    ExperimentRecord,
    Phase,
    TaskStatus,
    TrialStatus,
)
from diffcps_ray.tune.selection import evaluation_se
from diffcps_ray.tune.suites import METRIC, Budget, Suite, TaskEntry
from diffcps_ray.tune.trial_config import effective_lambda_clip

REPORT_EVERY_S = 30.0
# Table columns: (header, where the value comes from: the config or the last result).
_CONFIG_COLUMNS = ("task", "phase", "kappa", "seed")
_RESULT_COLUMNS = {"lambda_clip": "lambda_clip", "score": METRIC,
                   "best": "evaluation/best_normalized_score", "steps": "num_gradient_steps",
                   "iter": "training_iteration"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def status_table(trials: list[Any]) -> list[str]:
    """A psql-style table of the trials: name, status, config columns, result columns."""
    header = ["Trial name", "status", *_CONFIG_COLUMNS, *_RESULT_COLUMNS]
    rows = []
    for trial in trials:
        result = trial.last_result or {}
        rows.append([str(trial), str(trial.status),
                     *(_cell(trial.config.get(key)) for key in _CONFIG_COLUMNS),
                     *(_cell(metric_value(result, key)) for key in _RESULT_COLUMNS.values())])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    return [rule, line(header), rule, *(line(row) for row in rows), rule]


def best_trial_line(trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """``Current best trial: ...`` with the kappa and lambda_clip the trial runs with."""
    score = finite_number(metric_value(dict(result), METRIC))
    parts = [f"task {config.get('task')}"]
    if config.get("kappa") is not None:
        parts.append(f"kappa {float(config['kappa']):g}")
    if config.get("lambda_clip") is not None:
        parts.append(f"lambda_clip {effective_lambda_clip(dict(config)):g}")
    if config.get("seed") is not None:
        parts.append(f"seed {config['seed']}")
    scored = "no score yet" if score is None else f"score {score:.1f}"
    return f"Current best trial: {trial_id} ({', '.join(parts)}): {scored}"


class SweepReporter(ProgressReporter):
    """The sweep's status table, on Tune's public reporter interface."""

    def __init__(self, experiment_dir: str, total_samples: int | None = None) -> None:
        self.experiment_dir = experiment_dir
        self.total_samples = total_samples
        self._last_report = -math.inf

    def should_report(self, trials: list[Any], done: bool = False) -> bool:
        return done or time.monotonic() - self._last_report >= REPORT_EVERY_S

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        self._last_report = time.monotonic()
        counts: dict[str, int] = {}
        for trial in trials:
            counts[str(trial.status)] = counts.get(str(trial.status), 0) + 1
        lines = [f"== Status == {time.strftime('%H:%M:%S')}",
                 f"Experiment directory: {self.experiment_dir}",
                 "Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                 + (f" (up to {self.total_samples} in all)" if self.total_samples else "")]
        scored = [t for t in trials
                  if finite_number(metric_value(t.last_result or {}, METRIC)) is not None]
        if scored:
            best = max(scored, key=lambda t: metric_value(t.last_result, METRIC))
            lines.append(best_trial_line(best.trial_id, best.config, best.last_result))
        print("\n".join([*lines, *status_table(trials), ""]), flush=True)


class TrialEvents(Callback):
    """One console line per trial start, retry and failure.

    A failed trial's error is one line with the path of its full traceback, so that a
    sweep of hundreds of trials never hides a failure in the table. Tune pickles its
    callbacks into the experiment, so this one finds the running sweep (its log, its GPU
    wait) through ``adapters.current_driver`` instead of holding it.
    """

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        driver = current_driver()
        if driver is not None:
            driver.note_trial_started()
        _log(f"[sweep] started {describe(trial.trial_id, trial.config)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _log(f"[sweep] {describe(trial.trial_id, trial.config)} failed and restarts from "
             f"its last checkpoint: {error_line(trial)}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _log(f"[sweep] {describe(trial.trial_id, trial.config)} failed: {error_line(trial)}")


def _log(message: str) -> None:
    driver = current_driver()
    (driver.log if driver is not None else print)(message)


def describe(trial_id: str, config: Mapping[str, Any]) -> str:
    what = f"{config.get('phase', 'trial')} trial {trial_id} ({config.get('task')}"
    if config.get("phase") == Phase.SEARCH:
        what += f", kappa={config.get('kappa', 0):.3g}, lambda_clip="
        what += f"{effective_lambda_clip(dict(config)) or 0:.3g}"
    elif "seed" in config:
        what += f", seed {config['seed']}"
    return what + ")"


def error_line(trial: Any) -> str:
    """The last line of the trial's error file, and where the whole traceback is."""
    message = error_message(trial)
    if message is None:
        return f"see {trial.local_path}"
    return f"{message[:300]} (log: {trial.error_file})"


def summarise(record: ExperimentRecord, suite: Suite) -> list[str]:
    """Lines per task: final score mean +- standard error over seeds vs the behaviour.

    The standard error over seeds includes the evaluation noise; the evaluation's own
    noise (episode spread / sqrt(episodes), per seed) is stated beside it. A task that
    produced nothing gets a line that says why.
    """
    phase_record = record.run_phase
    if phase_record is None:
        return []
    phase = Phase.ABLATION if record.ablation is not None else Phase.CONFIRM
    episodes = int(phase_record.budget.get("eval_episodes", 0))
    lines = []
    for task, state in phase_record.tasks.items():
        rows = record.trials_of(phase, task)
        if state.status in (TaskStatus.SKIPPED, TaskStatus.FAILED):
            lines.append(f"{task}: no result ({state.status}: {state.reason}).")
            continue
        by_variant: dict[str, list] = {}
        for row in rows:
            variant = ",".join(f"{k}={v}" for k, v in (row.variant or {}).items())
            by_variant.setdefault(variant, []).append(row)
        for variant, group in by_variant.items():
            lines.append(_summary_line(task, variant, group, suite, episodes))
    return lines


def _summary_line(task: str, variant: str, rows: list, suite: Suite, episodes: int) -> str:
    label = f"{task}{' ' + variant if variant else ''}"
    ok = [r for r in rows if r.score is not None and r.status != TrialStatus.ERROR]
    failed = [r for r in rows if r.status == TrialStatus.ERROR]
    if ok:
        scores = [r.score for r in ok]
        eval_noise = [se for r in ok if (se := evaluation_se(r)) is not None]
        entry = suite.tasks.get(task)
        behaviour = None if entry is None or variant else entry.behaviour_score
        summary = score_summary(scores, eval_noise, episodes, behaviour)
        line = f"{label}: final normalised score {summary}"
        best = [r.best_score for r in ok if r.best_score is not None]
        if best:
            line += f"; best-of-run {statistics.fmean(best):.1f}"
    else:
        line = f"{label}: no run finished"
    for row in failed:
        kept = row.checkpoint(CheckpointKind.BEST)
        line += f"; seed {row.seed} failed"
        if kept is not None and kept.score is not None:
            line += (f" (its best checkpoint, score {kept.score:.1f} at iteration "
                     f"{kept.iteration}, is kept)")
        elif row.error:
            line += f" ({row.error})"
    return line + "."


def plan_lines(suite: Suite, tasks: list[TaskEntry], budget: Budget, num_samples: int,
               seeds: int) -> list[str]:
    """What a new sweep is about to run, a line per task's search and one for the rest."""
    if suite.is_ablation:
        return [f"[ablation] {len(tasks)} task(s) x {suite.grid} x {seeds} seed(s), "
                f"{budget.confirm.gradient_steps:,} steps"]
    lines = []
    for task in tasks:
        first = {k: r.first_point for k, r in task.search.items()}
        paper = ", ".join(
            f"{k}={value:g}"
            + (f" (sampled as the range's floor {first[k]:g})" if value != first[k] else "")
            for k, value in task.paper_point.items()
        )
        lines.append(f"[search] {task.name}: {num_samples} trials x up to "
                     f"{budget.search.gradient_steps:,} steps, the paper's config first: {paper}")
    lines.append(f"[confirm] each task's chosen config x {seeds} seed(s) x "
                 f"{budget.confirm.gradient_steps:,} steps, {budget.confirm.eval_episodes} "
                 f"evaluation episodes, as soon as its search has finished")
    return lines


def elapsed(start: float) -> str:
    seconds = time.monotonic() - start
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
