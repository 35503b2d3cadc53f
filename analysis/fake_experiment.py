"""Write a small experiment directory in the exact on-disk format, for tests and demos.

It writes what ``python -m diffcps_ray.tune`` and Tune write (docs/interfaces.md and
diffcps_ray/tune/sweep.py): ``experiment.json`` (format_version 2; per-phase state with the
search's recorded best trial; one row per trial with phase, task, trial_id, path, kappa,
lambda_clip, seed, status, iterations, score, best_score, error) and, per trial directory
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

    @property
    def phase_dir(self) -> str:
        return "sweep"  # one Tune experiment for every task and phase


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


def _search_phase(trials: list[FakeTrial], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """phases.search as the tune command keeps it, with its best pick per task."""
    tasks: dict[str, Any] = {}
    for task in sorted({t.task for t in trials if t.phase == "search"}):
        rows = [e for e in entries if e["phase"] == "search" and e["task"] == task]
        scored = [r for r in rows if r["status"] != "ERROR" and r["score"] is not None]
        full = [r for r in scored if r["status"] == "TERMINATED"]
        pool = full or scored
        best = max(pool, key=lambda r: r["score"]) if pool else None
        tasks[task] = {
            "dir": "sweep",
            "status": "done",
            "paper": {"kappa": 0.05, "lambda_clip": 0.0},
            "ranges": {"kappa": [0.005, 0.5], "lambda_clip": [0.01, 1.0]},
            "best": None if best is None else {
                k: best[k] for k in ("trial_id", "path", "kappa", "lambda_clip", "score")
            },
            "best_raw": None if best is None else {
                "kappa": best["kappa"], "lambda_clip": best["lambda_clip"]
            },
        }
    budget = {"iterations": 3, "steps_per_iteration": 1000, "eval_interval": 1,
              "eval_episodes": 10}
    return {"metric": "evaluation/normalized_score", "mode": "max", "budget": budget,
            "tasks": tasks}


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
    entries = []
    for number, trial in enumerate(trials):
        if not trial.trial_id:
            trial.trial_id = f"a1b2c_{number:05d}"
        finite = [s for s in trial.scores if math.isfinite(s)]
        entries.append(
            {
                "phase": trial.phase,
                "task": trial.task,
                "trial_id": trial.trial_id,
                "path": f"{trial.phase_dir}/{trial.phase}_{trial.trial_id}",
                "kappa": trial.kappa,
                "lambda_clip": trial.lambda_clip,
                "seed": trial.seed,
                "status": trial.status,
                "iterations": trial.iterations if trial.write_results else 0,
                "score": finite[-1] if finite and trial.write_results else None,
                "best_score": max(finite) if finite and trial.write_results else None,
                "error": trial.error,
                **({"variant": trial.variant} if trial.variant else {}),
            }
        )
        if trial.write_dir:
            _write_trial_dir(run_dir / entries[-1]["path"], trial)
    phases: dict[str, Any] = {}
    if any(t.phase == "search" for t in trials):
        phases["search"] = _search_phase(trials, entries)
    for phase in ("confirm", "ablation"):
        if any(t.phase == phase for t in trials):
            phases[phase] = {
                "dir": "sweep",
                "status": "done",
                "budget": {"iterations": 3, "steps_per_iteration": 1000, "eval_interval": 1,
                           "eval_episodes": 10},
                "seeds": sorted({t.seed for t in trials if t.phase == phase}),
            }
    manifest = {
        "format_version": 2,
        "suite": suite,
        "budget": budget,
        "created": "2026-11-24T20:00:00+00:00",
        "command": command,
        "options": {"num_samples": 3, "seeds": 3},
        "behaviour_scores": behaviour_scores or {},
        "phases": phases,
        "trials": entries,
    }
    (run_dir / "experiment.json").write_text(json.dumps(manifest, indent=2))
    return run_dir
