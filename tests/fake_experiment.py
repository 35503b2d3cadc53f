"""Write a small experiment directory in the exact on-disk format, for the analysis tests.

It writes what ``python -m diffcps_ray.tune`` and Tune write (docs/interfaces.md):
``experiment.json`` through the sweep's own ExperimentRecord (per-phase state with the
search's recorded best trial; one row per trial) and, per trial directory
(``sweep/search_<id>``, ``sweep/confirm_<id>``), Tune's own files:
``params.json`` (the config, ``json.dump(indent=2, sort_keys=True)`` as Tune's
JsonLoggerCallback does), ``result.json`` (one JSON object per line: the nested result
with Tune's auto-filled keys ``training_iteration``, ``trial_id``, ``config``, ``done``, ...;
evaluations every ``eval_interval`` iterations, carried forward in between, NaN before the
first) and ``progress.csv`` (the same results flattened with "/").
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcps_ray.tune.record import (
    ExperimentRecord,
    ExperimentStatus,
    Phase,
    RunPhase,
    SearchPhase,
    SearchTask,
    TaskState,
    TaskStatus,
    TrialRow,
    TrialStatus,
)
from diffcps_ray.tune.selection import TOP_SCORE, pick_best
from diffcps_ray.tune.store import ExperimentStore, trial_path


@dataclass
class FakeTrial:
    """One trial, given by its normalised score at each evaluation."""

    phase: str
    task: str
    seed: int
    kappa: float
    lambda_clip: float
    scores: list[float]
    status: str = "TERMINATED"
    trial_id: str = ""
    steps_per_iteration: int = 1000
    eval_interval: int = 1  # iterations per evaluation: len(scores) * eval_interval in all
    eval_episodes: int = 10
    # Raw return = score * return_scale (a stand-in for the task's normalisation).
    return_scale: float = 2.0
    variant: dict[str, Any] | None = None  # ablation trials
    error: str | None = None
    write_dir: bool = True
    write_results: bool = True
    write_error_file: bool = False

    @property
    def iterations(self) -> int:
        return len(self.scores) * self.eval_interval


def _flatten(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        # Tune's progress.csv leaves the config out and flattens the rest with "/".
        if key == "config" and not prefix:
            continue
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def _config(trial: FakeTrial) -> dict[str, Any]:
    return {
        "phase": trial.phase,
        "task": trial.task,
        "kappa": trial.kappa,
        "lambda_clip": trial.lambda_clip,
        "seed": trial.seed,
        "settings": {},
        "run": {
            "data_root": "data",
            "iterations": trial.iterations,
            "steps_per_iteration": trial.steps_per_iteration,
            "eval_interval": trial.eval_interval,
            "eval_episodes": trial.eval_episodes,
            "lambda_clip_zero_below": 0.0,
            "num_gpus": 0,
            "torch_threads": 1,
        },
        **({"variant": trial.variant} if trial.variant else {}),
    }


def _result_lines(trial: FakeTrial, config: dict[str, Any]) -> list[dict[str, Any]]:
    lines = []
    last = {"normalized_score": math.nan, "episode_return_mean": math.nan}
    best = -math.inf
    evaluations = 0
    for iteration in range(1, trial.iterations + 1):
        if iteration % trial.eval_interval == 0:
            score = trial.scores[evaluations]
            evaluations += 1
            best = max(best, score)
            last = {
                "normalized_score": score,
                "normalized_score_std": 5.0,
                "episode_return_mean": score * trial.return_scale,
                "num_episodes": trial.eval_episodes,
            }
        lines.append(
            {
                "learners": {"default_policy": {"critic_loss": 1.0 / iteration, "lambda": 1.0}},
                "evaluation": {
                    **last,
                    "best_normalized_score": best if evaluations else math.nan,
                    "num_evaluations": evaluations,
                },
                "num_gradient_steps": iteration * trial.steps_per_iteration,
                "done": iteration == trial.iterations,
                "training_iteration": iteration,
                "trial_id": trial.trial_id,
                "date": "2026-11-24_20-00-00",
                "timestamp": 1795000000 + iteration,
                "time_this_iter_s": 1.5,
                "time_total_s": 1.5 * iteration,
                "pid": 4242,
                "hostname": "fake-host",
                "node_ip": "127.0.0.1",
                "config": config,
                "time_since_restore": 1.5 * iteration,
                "iterations_since_restore": iteration,
            }
        )
    return lines


def _write_trial_dir(trial_dir: Path, trial: FakeTrial) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    config = _config(trial)
    (trial_dir / "params.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    if trial.write_error_file:
        (trial_dir / "error.txt").write_text("Failure # 1 (occurred at 2026-11-24)\n")
    if not trial.write_results:
        return
    lines = _result_lines(trial, config)
    with (trial_dir / "result.json").open("w") as handle:
        for line in lines:
            json.dump(line, handle)  # NaN is written as NaN, as Tune's encoder does
            handle.write("\n")
    flat = [_flatten(line) for line in lines]
    if flat:
        with (trial_dir / "progress.csv").open("w", newline="") as handle:
            # Keys that appear later (num_episodes after the first evaluation) get columns.
            names = list(dict.fromkeys(key for row in flat for key in row))
            writer = csv.DictWriter(handle, fieldnames=names, restval="")
            writer.writeheader()
            writer.writerows(flat)


def _search_phase(trials: list[FakeTrial], rows: list[TrialRow]) -> SearchPhase:
    """phases.search as the tune command keeps it, with its best pick per task."""
    tasks: dict[str, SearchTask] = {}
    for task in sorted({t.task for t in trials if t.phase == "search"}):
        best = pick_best([r for r in rows if r.phase == Phase.SEARCH and r.task == task])
        tasks[task] = SearchTask(
            status=TaskStatus.DONE,
            paper={"kappa": 0.05, "lambda_clip": 0.0},
            ranges={"kappa": [0.005, 0.5], "lambda_clip": [0.01, 1.0]},
            optuna_storage=f"optuna/{task}.journal",
            study_name=f"fake/{task}",
            selection=TOP_SCORE,
            best=None if best is None else {
                "trial_id": best.trial_id, "path": best.path, "kappa": best.kappa,
                "lambda_clip": best.lambda_clip, "score": best.score},
            best_raw=None if best is None else {"kappa": best.kappa,
                                                "lambda_clip": best.lambda_clip},
        )
    return SearchPhase(metric="evaluation/normalized_score", mode="max", budget=BUDGET,
                       tasks=tasks)


BUDGET = {"iterations": 3, "steps_per_iteration": 1000, "eval_interval": 1, "eval_episodes": 10}


def write_fake_experiment(
    run_dir: str | Path,
    trials: list[FakeTrial],
    suite: str = "pointmaze",
    budget: str = "smoke",
    command: str = "python -m diffcps_ray.tune --suite pointmaze --budget smoke",
    behaviour_scores: dict[str, float] | None = None,
) -> Path:
    """Write the experiment; return its directory."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, trial in enumerate(trials):
        if not trial.trial_id:
            trial.trial_id = f"a1b2c_{number:05d}"
        finite = [s for s in trial.scores if math.isfinite(s)]
        rows.append(TrialRow(
            phase=Phase(trial.phase), task=trial.task, trial_id=trial.trial_id,
            path=trial_path(trial.phase, trial.trial_id), kappa=trial.kappa,
            lambda_clip=trial.lambda_clip, seed=trial.seed, status=TrialStatus(trial.status),
            iterations=trial.iterations if trial.write_results else 0,
            score=finite[-1] if finite and trial.write_results else None,
            best_score=max(finite) if finite and trial.write_results else None,
            error=trial.error, variant=trial.variant,
        ))
        if trial.write_dir:
            _write_trial_dir(run_dir / rows[-1].path, trial)
    record = ExperimentRecord(
        suite=suite, budget=budget, command=command,
        options={"num_samples": 3, "seeds": 3}, budget_settings={},
        behaviour_scores=behaviour_scores or {}, status=ExperimentStatus.DONE,
        trials=rows, created="2026-11-24T20:00:00+00:00",
    )
    if any(t.phase == "search" for t in trials):
        record.search = _search_phase(trials, rows)
    for phase in ("confirm", "ablation"):
        phase_trials = [t for t in trials if t.phase == phase]
        if phase_trials:
            setattr(record, phase, RunPhase(
                budget=BUDGET, seeds=sorted({t.seed for t in phase_trials}),
                tasks={t.task: TaskState(TaskStatus.DONE) for t in phase_trials},
                status=TaskStatus.DONE))
    ExperimentStore(str(run_dir.parent), run_dir.name).write_record(record)  # as the sweep
    return run_dir
