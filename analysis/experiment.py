"""Read an experiment directory written by ``python -m diffcps_ray.tune`` (no Ray needed).

Layout (docs/interfaces.md): ``RUN_DIR/experiment.json`` (read as diffcps_ray.tune.record's
ExperimentRecord) lists every trial with its phase, task, Tune trial id, directory (relative
to RUN_DIR), kappa, lambda_clip, seed and status;
each trial directory is Tune's own, with ``params.json`` and ``result.json`` (one JSON object
per reported result, nested dicts, e.g. ``{"training_iteration": 3, "evaluation":
{"normalized_score": 41.2, ...}, "num_gradient_steps": 3000, "config": {...}}``).

Everything that can go wrong with one trial (missing directory, no or empty result.json,
an ERROR status, an unreadable line) is recorded as a problem of that trial, never raised;
only a directory that is not an experiment at all raises ``DiffCPSError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from diffcps_ray.errors import DiffCPSError
from diffcps_ray.results import metric_value
from diffcps_ray.tune.record import COMPLETE_STATUSES, ExperimentRecord, RecordError, TrialRow

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"

# Result metric names (docs/interfaces.md, "/" = nesting in result.json).
SCORE_KEY = "evaluation/normalized_score"
SCORE_STD_KEY = "evaluation/normalized_score_std"  # spread over one evaluation's episodes
RETURN_KEY = "evaluation/episode_return_mean"
BEST_KEY = "evaluation/best_normalized_score"
SUCCESS_KEY = "evaluation/success_rate"
EPISODES_KEY = "evaluation/num_episodes"
EVALUATIONS_KEY = "evaluation/num_evaluations"  # counts evaluations; rises when one ran
STEPS_KEY = "num_gradient_steps"
ITERATION_KEY = "training_iteration"

# COMPLETE_STATUSES (record.py): complete runs (STOPPED_EARLY: a search trial that ASHA
# ended on purpose); anything else is listed in the report and left out of tables and figures.

# What identifies a trial, first in every table.
TRIAL_COLUMNS = [
    "suite",
    "task",
    "phase",
    "trial_id",
    "kappa",
    "lambda_clip",
    "seed",
    "variant",
]

# The tidy table: one row per reported result.
RESULT_COLUMNS = [
    *TRIAL_COLUMNS,
    "iteration",
    "num_gradient_steps",
    "evaluated",
    "normalized_score",
    "normalized_score_std",
    "episode_return_mean",
    "best_normalized_score",
    "success_rate",
    "evaluation_episodes",
    "time_total_s",
]


class NotAnExperimentError(DiffCPSError):
    """RUN_DIR is not an experiment directory written by the tune command."""


@dataclass
class TrialInfo:
    """One trial of the manifest, with what we found on disk."""

    phase: str
    task: str
    trial_id: str
    path: str
    kappa: float
    lambda_clip: float
    seed: int | None
    status: str
    variant: str = ""  # ablation trials: the varied setting, e.g. "T=15"
    error: str = ""  # the tune command's one-line error, where it recorded one
    num_results: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """A finished trial with results: it enters the tables and figures."""
        return self.num_results > 0 and self.status in COMPLETE_STATUSES


@dataclass
class Experiment:
    """An experiment directory, read."""

    run_dir: Path
    record: ExperimentRecord
    trials: list[TrialInfo]
    results: pd.DataFrame  # RESULT_COLUMNS, one row per reported result
    params: dict[str, dict[str, Any]]  # trial_id -> params.json

    @property
    def manifest(self) -> dict[str, Any]:
        """The record as JSON data (the report shows its settings as they are stored)."""
        return self.record.to_dict()

    @property
    def suite(self) -> str:
        return self.record.suite

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def behaviour_scores(self) -> dict[str, float]:
        """The data's behaviour policy per task, where the tune command recorded it."""
        return {task: score for task, score in self.record.behaviour_scores.items()
                if math.isfinite(score)}


def _as_float(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_record(run_dir: Path) -> ExperimentRecord:
    if not run_dir.is_dir():
        raise NotAnExperimentError(f"{run_dir} is not a directory.")
    try:
        return ExperimentRecord.load(run_dir)
    except RecordError as error:
        raise NotAnExperimentError(str(error)) from None


def _variant_label(variant: Any) -> str:
    if isinstance(variant, dict):
        return ", ".join(f"{key}={value}" for key, value in sorted(variant.items()))
    return "" if variant is None else str(variant)


def _trial_from_row(row: TrialRow) -> TrialInfo:
    return TrialInfo(
        phase=str(row.phase),
        task=row.task,
        trial_id=row.trial_id,
        path=row.path,
        kappa=_as_float(row.kappa),
        lambda_clip=_as_float(row.lambda_clip),
        seed=row.seed,
        status=str(row.status),
        variant=_variant_label(row.variant),
        error=row.error or "",
    )


def _read_result_lines(path: Path, trial: TrialInfo) -> list[dict[str, Any]]:
    results = []
    bad_lines = 0
    # Tune appends one object per line; a crash can leave a torn last line.
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            bad_lines += 1
            continue
        if isinstance(parsed, dict):
            results.append(parsed)
        else:
            bad_lines += 1
    if bad_lines:
        trial.problems.append(f"{bad_lines} unreadable line(s) in {RESULT_FILE} skipped")
    return results


def _rows_for_trial(
    suite: str, trial: TrialInfo, results: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    previous_evaluations = 0.0
    for number, result in enumerate(results, start=1):
        iteration = _as_float(metric_value(result, ITERATION_KEY))
        score = _as_float(metric_value(result, SCORE_KEY))
        evaluations = _as_float(metric_value(result, EVALUATIONS_KEY))
        # Results carry the last evaluation forward; a fresh one raises num_evaluations.
        # Without that counter, every row with a score counts as evaluated.
        if math.isnan(evaluations):
            evaluated = not math.isnan(score)
        else:
            evaluated = evaluations > previous_evaluations
            previous_evaluations = evaluations
        rows.append(
            {
                "suite": suite,
                "task": trial.task,
                "phase": trial.phase,
                "trial_id": trial.trial_id,
                "kappa": trial.kappa,
                "lambda_clip": trial.lambda_clip,
                "seed": trial.seed,
                "variant": trial.variant,
                "iteration": number if math.isnan(iteration) else int(iteration),
                "num_gradient_steps": _as_float(metric_value(result, STEPS_KEY)),
                "evaluated": evaluated,
                "normalized_score": score,
                "normalized_score_std": _as_float(metric_value(result, SCORE_STD_KEY)),
                "episode_return_mean": _as_float(metric_value(result, RETURN_KEY)),
                "best_normalized_score": _as_float(metric_value(result, BEST_KEY)),
                "success_rate": _as_float(metric_value(result, SUCCESS_KEY)),
                "evaluation_episodes": _as_float(metric_value(result, EPISODES_KEY)),
                "time_total_s": _as_float(metric_value(result, "time_total_s")),
            }
        )
    return rows


def _fill_from_params(trial: TrialInfo, params: dict[str, Any]) -> None:
    """Manifest fields left out are taken from the trial's own config where it has them."""
    for name in ("kappa", "lambda_clip"):
        if math.isnan(getattr(trial, name)):
            setattr(trial, name, _as_float(metric_value(params, name)))
    if trial.seed is None:
        seed = _as_float(metric_value(params, "seed"))
        trial.seed = None if math.isnan(seed) else int(seed)


def _read_params(trial_dir: Path, trial: TrialInfo) -> dict[str, Any] | None:
    path = trial_dir / PARAMS_FILE
    if not path.is_file():
        return None
    try:
        params = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        trial.problems.append(f"{PARAMS_FILE} unreadable")
        return None
    return params if isinstance(params, dict) else None


def _read_results(trial_dir: Path, trial: TrialInfo) -> list[dict[str, Any]]:
    path = trial_dir / RESULT_FILE
    if not path.is_file():
        trial.problems.append(f"no {RESULT_FILE}")
        return []
    results = _read_result_lines(path, trial)
    if not results:
        trial.problems.append(f"{RESULT_FILE} holds no results")
    return results


def load_experiment(run_dir: str | Path) -> Experiment:
    """Read the manifest and every trial's results; raise only if it is no experiment."""
    run_dir = Path(run_dir)
    record = _read_record(run_dir)
    suite = record.suite
    trials: list[TrialInfo] = []
    rows: list[dict[str, Any]] = []
    all_params: dict[str, dict[str, Any]] = {}
    for row in record.trials:
        trial = _trial_from_row(row)
        trials.append(trial)
        trial_dir = run_dir / trial.path if trial.path else None
        if trial_dir is None or not trial_dir.is_dir():
            trial.problems.append("trial directory missing")
        else:
            params = _read_params(trial_dir, trial)
            if params is not None:
                all_params[trial.trial_id] = params
                _fill_from_params(trial, params)
            results = _read_results(trial_dir, trial)
            trial.num_results = len(results)
            rows.extend(_rows_for_trial(suite, trial, results))
        if trial.status not in COMPLETE_STATUSES:
            trial.problems.append(
                f"status {trial.status}" + (f": {trial.error}" if trial.error else "")
            )
    results_frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    results_frame["seed"] = results_frame["seed"].astype("Int64")
    return Experiment(
        run_dir=run_dir, record=record, trials=trials, results=results_frame, params=all_params
    )
