"""Where a smoke sweep's wall time goes: training and evaluation vs orchestration.

Runs ``python -m diffcps_ray.tune --suite pointmaze --budget smoke --tasks
pointmaze-umaze`` (the real DiffCPS trainable) in a temporary directory, then reads every
trial's result.json:

- train_s: time in gradient steps (each iteration's steps / the learner's steps_per_s),
- eval_s: time inside simulator evaluations (the Algorithm's own evaluation timer),
- iteration_other_s: the rest of Algorithm.train (mostly the first iteration's Ray Data
  read and materialisation, RLlib's bookkeeping),
- inside_share: (train_s + eval_s) / (wall_s x concurrent trial slots),
- orchestration_share: the rest (Ray start, trial actors, Algorithm builds, Ray Data
  start-up, checkpoints, Tune's loop, both phases' set-up).

Prints one JSON object last. Usage: python bench/tune_overhead.py [--keep DIR] [extra
flags for the tune command, e.g. --num-samples 4].
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def trial_times(experiment: Path, manifest: dict) -> tuple[float, float, float, int]:
    """Summed (train_s, eval_s, other_s, gradient steps) over every trial."""
    train_s = eval_s = other_s = 0.0
    steps = 0
    for row in manifest["trials"]:
        lines = (experiment / row["path"] / "result.json").read_text().splitlines()
        evaluations_seen = 0
        steps_before = 0
        for line in lines:
            result = json.loads(line)
            evaluation = result.get("evaluation", {})
            step_s = float(result.get("time_this_iter_s", 0.0))
            this_eval = 0.0
            count = int(evaluation.get("num_evaluations", 0) or 0)
            if count > evaluations_seen:  # a fresh evaluation ran in this iteration
                this_eval = float(evaluation.get("time_s", 0.0) or 0.0)
                evaluations_seen = count
            steps_now = int(result.get("num_gradient_steps", 0))
            rate = float(result.get("learners", {}).get("default_policy", {})
                         .get("steps_per_s", 0.0) or 0.0)
            gradient_s = (steps_now - steps_before) / rate if rate > 0 else 0.0
            steps_before = steps_now
            eval_s += this_eval
            train_s += gradient_s
            other_s += max(0.0, step_s - this_eval - gradient_s)
        steps += steps_before
    return train_s, eval_s, other_s, steps


def main(argv: list[str]) -> int:
    from diffcps_ray.tune.cli import main as tune_main
    from diffcps_ray.tune.suites import load_suite

    keep = None
    if argv[:1] == ["--keep"]:
        keep, argv = Path(argv[1]), argv[2:]
    root = keep or Path(tempfile.mkdtemp(prefix="tune_overhead_"))
    name = f"overhead-{int(time.time())}"
    # UMaze alone, as before the suite gained pointmaze-medium (--tasks in argv overrides).
    args = ["--suite", "pointmaze", "--budget", "smoke", "--data-root", str(root / "data"),
            "--storage", str(root / "runs"), "--name", name, "--tasks", "pointmaze-umaze",
            *argv]
    # Data generation is not part of a sweep's orchestration: make it first.
    from diffcps_ray.tune.data_prep import prepare_data

    suite = load_suite("pointmaze")
    prepare_data(suite, list(suite.tasks), root / "data", suite.budget("smoke").transitions)
    start = time.perf_counter()
    tune_main(args)
    wall_s = time.perf_counter() - start
    experiment = root / "runs" / name
    manifest = json.loads((experiment / "experiment.json").read_text())
    train_s, eval_s, other_s, steps = trial_times(experiment, manifest)
    slots = int(manifest["options"].get("max_concurrent") or (os.cpu_count() or 1))
    inside = (train_s + eval_s) / (wall_s * slots)
    print(json.dumps({
        "bench": "tune_overhead",
        "suite": "pointmaze", "budget": "smoke",
        "trials": len(manifest["trials"]),
        "concurrent_slots": slots,
        "wall_s": round(wall_s, 2),
        "train_s": round(train_s, 2),
        "eval_s": round(eval_s, 2),
        "iteration_other_s": round(other_s, 2),
        "gradient_steps": steps,
        "inside_share": round(inside, 4),
        "orchestration_share": round(1.0 - inside, 4),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
