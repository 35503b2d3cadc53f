"""The Tune trainable: one DiffCPS Algorithm per trial, with NaN checks and lean results.

Why a thin wrapper instead of passing the DiffCPS Algorithm class to Tune directly:
- the trial's config stays small and flat (task, kappa, lambda_clip, seed, settings
  overrides, run lengths), which is what the sweep's searcher proposes, what params.json and the
  analysis read, and what experiment.json records;
- each result is checked for non-finite losses: the trial stops with an error naming the
  metric (and a retry does not train into the same NaN again);
- the Algorithm runs everything in the trial's own process (local learner, evaluation
  without remote env runners), so a trial needs exactly its bundle of CPUs/GPUs and the
  Ray Data read tasks use the CPUs left outside the trials' placement groups.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol

from ray import tune

from diffcps_ray.errors import DiffCPSError
from diffcps_ray.results import finite_number, metric_value
from diffcps_ray.tune.suites import METRIC

# Keys Tune's Trainable sets itself; an inner Algorithm's copies would shadow ours.
_TRAINABLE_KEYS = frozenset(
    {
        "config", "done", "training_iteration", "iterations_since_restore", "trial_id",
        "experiment_id", "date", "timestamp", "time_this_iter_s", "time_total_s",
        "time_since_restore", "timesteps_since_restore", "pid", "hostname", "node_ip",
        "experiment_tag", "should_checkpoint", "timesteps_total", "episodes_total",
        "perf",
    }
)
NAN_MARKER = "nonfinite_metric.txt"
# A top-level result key (Tune ranks checkpoints only by those): the evaluation score of
# an evaluated iteration, NaN elsewhere. tune/adapters.py's checkpoint_config uses it.
CHECKPOINT_SCORE = "checkpoint_score"
# The agent's training metrics (docs/interfaces.md) that must stay finite. Not every
# learner metric: RLlib reports some as NaN on purpose (num_trainable_parameters), and
# evaluation scores are NaN before the first evaluation.
CHECKED_METRICS = (
    "critic_loss", "diffusion_loss", "actor_loss", "q_loss", "lambda", "lambda_clamped",
    "q_mean", "critic_grad_norm", "actor_grad_norm",
)


class NonFiniteMetricError(DiffCPSError):
    """A training metric became NaN or infinite."""


class AlgorithmLike(Protocol):
    def train(self) -> dict[str, Any]: ...

    def save_to_path(self, path: str) -> Any: ...

    def restore_from_path(self, path: str) -> Any: ...

    def stop(self) -> None: ...


def first_nonfinite(result: Mapping[str, Any], prefix: str = "") -> tuple[str, float] | None:
    """The first (flattened key, value) in ``result`` that is a non-finite number."""
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found = first_nonfinite(value, f"{name}/")
            if found:
                return found
        elif isinstance(value, float | int) and not isinstance(value, bool):
            if not math.isfinite(value):
                return name, float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            number = float(value.item())
            if not math.isfinite(number):
                return name, number
    return None


class DiffCPSTrial(tune.Trainable):
    """One trial: builds the Algorithm in ``setup``, one ``step`` = one Algorithm iteration."""

    def setup(self, config: dict[str, Any]) -> None:
        from diffcps_ray.runtime import set_torch_threads

        granted = self.with_granted_resources(config)
        set_torch_threads(int(granted.get("run", {}).get("torch_threads", 1)))
        marker = self._marker_path()
        if marker is not None and marker.is_file():
            # A retry after a NaN would restore the same state and diverge again.
            raise NonFiniteMetricError(marker.read_text().strip())
        self.algorithm = self.build_algorithm(config)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reuse this actor for the next trial (TuneConfig(reuse_actors=True)).

        Starting a trial actor costs a process and the torch/Ray/RLlib imports (seconds on a
        small machine); a fresh Algorithm in the same process costs only its build.
        """
        self.cleanup()
        self.algorithm = None
        marker = self._marker_path()
        if marker is not None and marker.is_file():
            raise NonFiniteMetricError(marker.read_text().strip())
        self.algorithm = self.build_algorithm(new_config)
        return True

    def build_algorithm(self, config: dict[str, Any]) -> AlgorithmLike:
        from diffcps_ray.tune.bridge import build_diffcps

        return build_diffcps(self.with_granted_resources(config))

    def with_granted_resources(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config with the GPUs and threads this trial was given.

        A resumed sweep may run its trials with other ``--gpus-per-trial`` or
        ``--cpus-per-trial`` than the trial's config recorded when it was first proposed.
        """
        try:
            granted = self.trial_resources.required_resources
        except AttributeError:  # outside Tune
            return config
        run = dict(config.get("run", {}))
        run["num_gpus"] = float(granted.get("GPU", 0.0))
        run["torch_threads"] = max(1, int(granted.get("CPU", 1.0)))
        return {**config, "run": run}

    def step(self) -> dict[str, Any]:
        from diffcps_ray.algorithm.agent import DivergedError

        try:
            raw = self.algorithm.train()
        except DivergedError as error:  # the evaluation met diverged weights
            self._stop_diverged(f"Trial stopped: {error} at iteration {self.iteration + 1}")
        result = {k: v for k, v in raw.items() if k not in _TRAINABLE_KEYS}
        # Checkpoint where an evaluation scored the weights: the best-scoring checkpoint
        # is then a policy with a known score (the end is checkpointed by Tune). Results
        # carry the last evaluation forward, so only an evaluated iteration has a
        # checkpoint score; Tune ranks the NaN of the others lowest.
        interval = int(self.config.get("run", {}).get("eval_interval", 0) or 0)
        evaluated = bool(interval) and (self.iteration + 1) % interval == 0
        result["should_checkpoint"] = evaluated
        score = metric_value(result, METRIC)
        result[CHECKPOINT_SCORE] = (float(score) if evaluated and finite_number(score)
                                    is not None else math.nan)
        learners = result.get("learners") or {}
        for module, metrics in learners.items():
            if not isinstance(metrics, Mapping):
                continue
            checked = {k: metrics[k] for k in CHECKED_METRICS if k in metrics}
            found = first_nonfinite(checked, f"learners/{module}/")
            if found:
                name, value = found
                self._stop_diverged(f"Trial stopped: {name} became {value} at iteration "
                                    f"{self.iteration + 1}")
        # What this trial runs with, as metrics: the status table and TensorBoard show the
        # effective lambda_clip (0 for a zero-floor range's floor), not the sampled value.
        from diffcps_ray.tune.trial_config import effective_lambda_clip

        result["kappa"] = float(self.config["kappa"])
        result["lambda_clip"] = effective_lambda_clip(self.config)
        return result

    def _stop_diverged(self, what: str) -> NoReturn:
        """Fail the trial for good: a retry would restore the same state and diverge again."""
        message = (f"{what} (kappa {self.config.get('kappa')}, lambda_clip "
                   f"{self.config.get('lambda_clip')}).")
        marker = self._marker_path()
        if marker is not None:
            marker.write_text(message + "\n")
        raise NonFiniteMetricError(message)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        self.algorithm.save_to_path(os.path.join(checkpoint_dir, "algorithm"))

    def load_checkpoint(self, checkpoint: str | dict | None) -> None:
        assert isinstance(checkpoint, str)
        self.algorithm.restore_from_path(os.path.join(checkpoint, "algorithm"))

    def cleanup(self) -> None:
        algorithm = getattr(self, "algorithm", None)
        if algorithm is not None:
            algorithm.stop()
            self.algorithm = None

    def _marker_path(self) -> Path | None:
        # The trial's directory on this node (Tune's public Trainable.logdir; reset()
        # points it at the next trial before reset_config runs).
        return Path(self.logdir) / NAN_MARKER if self.logdir else None
