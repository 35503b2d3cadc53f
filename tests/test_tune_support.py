"""A stand-in for the DiffCPS Algorithm that keeps the Tune tests of the sweep fast.

It has the Algorithm's surface (train / save_to_path / restore_from_path / stop), reads its
task's shards with Ray Data like the real learner does (so the CPU reservation for Ray Data
is exercised), and can be told to die, to produce NaN, or to report its node. The plumbing
under test (checkpoints, retries, resume, searcher state, NaN handling, placement) is the
production code in diffcps_ray.tune; only the training inside a trial is replaced.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

from diffcps_ray.tune.trainable import DiffCPSTrial


class StandInAlgorithm:
    """Scores rise with iterations and peak near kappa 0.05 and lambda_clip 1."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.run = config["run"]
        self.iteration = 0
        self.best = -math.inf
        if self.run.get("read_data", False):
            import ray

            from diffcps_ray.data.shards import task_dir

            path = task_dir(self.run["data_root"], config["task"])
            # Ray Data read tasks run outside the trial's placement group.
            self.rows = ray.data.read_parquet(str(path)).materialize().count()

    def train(self) -> dict[str, Any]:
        self.iteration += 1
        time.sleep(float(self.run.get("sleep", 0.0)))
        kill = self.run.get("kill_once_at")
        if kill and self.iteration == kill["iteration"] and not Path(kill["marker"]).exists():
            Path(kill["marker"]).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-run
        kappa, lambda_clip = self.config["kappa"], self.config["lambda_clip"]
        score = (
            50.0
            - 20.0 * abs(math.log10(kappa / 0.05))
            - 5.0 * abs(math.log10((lambda_clip + 1e-3) / 1.0))
            + self.iteration
        )
        curve = self.run.get("score_curve")  # a given learning curve, one score an iteration
        if curve:
            score = float(curve[min(self.iteration, len(curve)) - 1])
        self.best = max(self.best, score)
        # NaN for one kappa (the paper's, proposed first) or above a threshold, from
        # ``nan_from_iteration`` on (1: a trial that diverges at once), in ``nan_phase``
        # only where given.
        nan_kappa = self.run.get("nan_when_kappa")
        nan_above = self.run.get("nan_when_kappa_above")
        diverges = ((nan_kappa is not None and math.isclose(kappa, nan_kappa))
                    or (nan_above is not None and kappa > nan_above))
        diverges = diverges and self.run.get("nan_phase", self.config["phase"]) == \
            self.config["phase"]
        diverged = diverges and self.iteration >= int(self.run.get("nan_from_iteration", 1))
        loss = float("nan") if diverged else 0.1
        import ray

        return {
            "evaluation": {"normalized_score": score, "best_normalized_score": self.best},
            "learners": {"default_policy": {"critic_loss": loss}},
            "num_gradient_steps": self.iteration * self.run["steps_per_iteration"],
            "node_id": ray.get_runtime_context().get_node_id(),
            "training_iteration": 12345,  # the wrapper must not pass this through
        }

    def save_to_path(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        state = {"iteration": self.iteration, "best": self.best}
        Path(path, "state.json").write_text(json.dumps(state))

    def restore_from_path(self, path: str) -> None:
        state = json.loads(Path(path, "state.json").read_text())
        self.iteration, self.best = state["iteration"], state["best"]

    def stop(self) -> None:
        pass


class StandInTrial(DiffCPSTrial):
    """The production trainable with the stand-in algorithm inside."""

    def build_algorithm(self, config: dict[str, Any]) -> StandInAlgorithm:
        return StandInAlgorithm(config)


def with_run_options(trainable: type, **options: Any) -> type:
    """A trainable whose trials get extra ``run`` options (kill, NaN, sleep ...)."""

    class Configured(trainable):  # type: ignore[misc, valid-type]
        def build_algorithm(self, config: dict[str, Any]) -> Any:
            config = {**config, "run": {**config["run"], **options}}
            return super().build_algorithm(config)

    return Configured


def tiny_suite(iterations: int = 2, steps: int = 5) -> Any:
    """The pointmaze suite with a smoke budget of ``iterations`` x ``steps`` per trial."""
    import dataclasses

    from diffcps_ray.tune.suites import PhaseBudget, load_suite

    suite = load_suite("pointmaze")
    phase = PhaseBudget(iterations=iterations, steps_per_iteration=steps, eval_interval=1,
                        eval_episodes=1)
    budget = dataclasses.replace(
        suite.budgets["smoke"], search=phase, confirm=phase, grace_period=1, reduction_factor=2
    )
    return dataclasses.replace(suite, budgets={**suite.budgets, "smoke": budget})


SECOND_TASK = "pointmaze-medium"


def two_task_suite(iterations: int = 2, steps: int = 5) -> Any:
    """tiny_suite with a second task (the stand-in trains on neither task's data)."""
    import dataclasses

    suite = tiny_suite(iterations, steps)
    umaze = suite.tasks["pointmaze-umaze"]
    second = suite.tasks.get(SECOND_TASK) or dataclasses.replace(umaze, name=SECOND_TASK)
    return dataclasses.replace(suite, tasks={"pointmaze-umaze": umaze, SECOND_TASK: second})


def tiny_options(tmp: Path, data_root: Path, **changes: Any) -> Any:
    from diffcps_ray.tune.sweep import SweepOptions

    options = {
        "suite": "pointmaze", "budget": "smoke", "tasks": ["pointmaze-umaze"],
        "data_root": str(data_root), "storage": str(tmp / "runs"), "name": "exp",
        "address": None, "gpus_per_trial": 0.0, "cpus_per_trial": 1.0, "num_samples": 3,
        "seeds": 2, "max_concurrent": None, "data_cpus": 2.0,
    }
    return SweepOptions(**{**options, **changes})


def make_data(data_root: Path, transitions: int = 3000) -> Path:
    from diffcps_ray.tune.data_prep import prepare_data
    from diffcps_ray.tune.suites import load_suite

    prepare_data(load_suite("pointmaze"), ["pointmaze-umaze"], data_root, transitions,
                 log=lambda _: None)
    return data_root


class KillOnceTrial(DiffCPSTrial):
    """The real DiffCPS trainable, whose worker dies once at a given iteration."""

    kill_at = 2
    marker = ""

    def step(self) -> dict[str, Any]:
        if self.iteration + 1 == self.kill_at and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().step()
