"""Write a small experiment directory in the exact on-disk format, for tests and demos.

It writes what ``python -m diffcps_ray.tune`` and Tune write (docs/interfaces.md):
``experiment.json`` (format_version 1) and, per trial, Tune's ``params.json`` (the config,
``json.dump(indent=2, sort_keys=True)`` as Tune's JsonLoggerCallback does), ``result.json``
(one JSON object per line: the nested result dict with Tune's auto-filled keys
``training_iteration``, ``trial_id``, ``config``, ``done``, ...) and ``progress.csv``
(the same results flattened with "/" as the separator).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeTrial:
    """One trial: its normalised score at each training iteration (one evaluation each)."""

    phase: str
    task: str
    seed: int
    kappa: float
    lambda_clip: float
    scores: list[float]
    status: str = "TERMINATED"
    trial_id: str = ""
    steps_per_iteration: int = 1000
    # Raw return = score * return_scale (a stand-in for the task's normalisation).
    return_scale: float = 2.0
    write_dir: bool = True
    write_results: bool = True
    write_error_file: bool = False
    extra_config: dict[str, Any] = field(default_factory=dict)


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


def _result_lines(trial: FakeTrial, config: dict[str, Any]) -> list[dict[str, Any]]:
    lines = []
    best = -math.inf
    for index, score in enumerate(trial.scores):
        iteration = index + 1
        best = max(best, score)
        lines.append(
            {
                "evaluation": {
                    "normalized_score": score,
                    "episode_return_mean": score * trial.return_scale,
                    "best_normalized_score": best,
                    "num_episodes": 10,
                },
                "learners": {"default_policy": {"critic_loss": 1.0 / iteration, "lambda": 1.0}},
                "num_gradient_steps": iteration * trial.steps_per_iteration,
                "done": iteration == len(trial.scores),
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


def write_fake_experiment(
    run_dir: str | Path,
    trials: list[FakeTrial],
    suite: str = "pointmaze",
    budget: str = "smoke",
    command: str = "python -m diffcps_ray.tune --suite pointmaze --budget smoke",
) -> Path:
    """Write the experiment; return its directory."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, trial in enumerate(trials):
        if not trial.trial_id:
            trial.trial_id = f"a1b2c_{number:05d}"
        path = f"{trial.phase}/{trial.task}_{trial.trial_id}"
        entries.append(
            {
                "phase": trial.phase,
                "task": trial.task,
                "trial_id": trial.trial_id,
                "path": path,
                "kappa": trial.kappa,
                "lambda_clip": trial.lambda_clip,
                "seed": trial.seed,
                "status": trial.status,
            }
        )
        if not trial.write_dir:
            continue
        trial_dir = run_dir / path
        trial_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "task": trial.task,
            "kappa": trial.kappa,
            "lambda_clip": trial.lambda_clip,
            "seed": trial.seed,
            "gradient_steps_per_iteration": trial.steps_per_iteration,
            **trial.extra_config,
        }
        (trial_dir / "params.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        if trial.write_error_file:
            (trial_dir / "error.txt").write_text("Failure # 1 (occurred at 2026-11-24)\n")
        if not trial.write_results:
            continue
        lines = _result_lines(trial, config)
        with (trial_dir / "result.json").open("w") as handle:
            for line in lines:
                json.dump(line, handle)
                handle.write("\n")
        flat = [_flatten(line) for line in lines]
        if flat:
            with (trial_dir / "progress.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
                writer.writeheader()
                writer.writerows(flat)
    manifest = {
        "format_version": 1,
        "suite": suite,
        "budget": budget,
        "created": "2026-11-24T20:00:00+00:00",
        "command": command,
        "phases": {
            "search": {"num_samples": sum(t.phase == "search" for t in trials)},
            "confirm": {"seeds": sorted({t.seed for t in trials if t.phase == "confirm"})},
        },
        "trials": entries,
    }
    (run_dir / "experiment.json").write_text(json.dumps(manifest, indent=2))
    return run_dir
