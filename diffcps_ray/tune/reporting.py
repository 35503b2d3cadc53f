"""What a sweep prints and records besides experiment.json: the progress table, experiment
tracking (--logger) and the Ray settings that keep start-up quiet.

- ``SweepReporter``: Tune's CLIReporter showing the score, kappa and the lambda_clip trials
  run with (the trainable reports it; the sampled floor of a zero-floor range means 0), and
  naming the experiment's own directory instead of Tune's staging copy under /tmp/ray.
- ``logger_callbacks``: Tune's CSV and JSON loggers (the analysis reads result.json) plus
  the trackers asked for: TensorBoard, Weights & Biases, MLflow.
- ``tune_env``, ``ray_init_settings``: environment and ``ray.init`` settings under which
  Ray's token, worker start-up and Tune's output warnings do not arise.

This module subclasses a Tune class, so it imports Ray; import it where Ray is used.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback, CLIReporter

from diffcps_ray.errors import ConfigError
from diffcps_ray.tune.bridge import effective_lambda_clip
from diffcps_ray.tune.suites import METRIC

# The trainable reports these next to the scores (docs/interfaces.md): the values a trial
# runs with, as result metrics, so the table, result.json and TensorBoard all show them.
KAPPA_METRIC = "kappa"
LAMBDA_CLIP_METRIC = "lambda_clip"

# --logger NAME -> (module that must import, pip extra of diffcps-ray that installs it).
LOGGER_PACKAGES = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


# --- the progress table --------------------------------------------------------------------


class SweepReporter(CLIReporter):
    """Tune's status table with our columns, our best-trial line and our directory.

    Tune fills the parameter columns from each trial's config, so the sampled lambda_clip
    (e.g. the floor 0.001 that stands for 0) would show there; the table shows the
    ``lambda_clip`` result metric instead, which a trial reports from its first result on.
    """

    def __init__(self, experiment_dir: str, total_samples: int | None = None) -> None:
        super().__init__(
            metric_columns={
                LAMBDA_CLIP_METRIC: "lambda_clip",
                METRIC: "score",
                "evaluation/best_normalized_score": "best",
                "num_gradient_steps": "steps",
                "training_iteration": "iter",
            },
            parameter_columns={"task": "task", "phase": "phase", "kappa": "kappa",
                               "seed": "seed"},
            total_samples=total_samples,
            max_report_frequency=30,
        )
        self.experiment_dir = experiment_dir

    def _progress_str(self, trials: list[Any], done: bool, *sys_info: Any,
                      fmt: str = "psql", delim: str = "\n") -> str:
        text = super()._progress_str(trials, done, *sys_info, fmt=fmt, delim=delim)
        best, _ = self._current_best_trial(trials)
        lines = []
        for line in text.split(delim):
            if line.startswith("Result logdir: "):
                # Tune names its staging copy under /tmp/ray (one line per copy); the
                # results are synced to the experiment's directory, which is what to open.
                line = f"Experiment directory: {self.experiment_dir}"
                if line in lines:
                    continue
            elif line.startswith("Current best trial: ") and best is not None:
                line = best_trial_line(best.trial_id, best.config, best.last_result)
            lines.append(line)
        return delim.join(lines)


def best_trial_line(trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    """``Current best trial: ...`` with the kappa and lambda_clip the trial runs with."""
    evaluation = result.get("evaluation") or {}
    score = evaluation.get(METRIC.split("/", 1)[-1]) if isinstance(evaluation, Mapping) else None
    parts = [f"task {config.get('task')}"]
    if config.get("kappa") is not None:
        parts.append(f"kappa {float(config['kappa']):g}")
    if config.get("lambda_clip") is not None:
        parts.append(f"lambda_clip {effective_lambda_clip(dict(config)):g}")
    if config.get("seed") is not None:
        parts.append(f"seed {config['seed']}")
    scored = (
        f"score {float(score):.1f}"
        if isinstance(score, int | float) and math.isfinite(score) else "no score yet"
    )
    return f"Current best trial: {trial_id} ({', '.join(parts)}): {scored}"


def make_reporter(experiment_dir: str, total_samples: int | None = None) -> SweepReporter:
    """The progress reporter of one Tune experiment of a sweep (a phase directory)."""
    return SweepReporter(experiment_dir, total_samples)


# --- experiment tracking -------------------------------------------------------------------


def missing_package(name: str) -> str | None:
    """The sentence for a --logger whose package is not installed, or None."""
    if name not in LOGGER_PACKAGES:
        raise ConfigError(
            f"Unknown logger {name!r}: choose from {', '.join(LOGGER_PACKAGES)}."
        )
    module, extra = LOGGER_PACKAGES[name]
    if importlib.util.find_spec(module) is not None:
        return None
    return (
        f"--logger {name} needs the {module} package: "
        f"pip install 'diffcps-ray[{extra}]' (or pip install -e '.[{extra}]' in a checkout)."
    )


def check_loggers(names: list[str]) -> None:
    """Raise ConfigError with one sentence for the first unknown or uninstalled logger."""
    for name in names:
        sentence = missing_package(name)
        if sentence:
            raise ConfigError(sentence)


def logger_callbacks(names: list[str], experiment: str = "diffcps",
                     experiment_dir: str | None = None) -> list[Callback]:
    """Tune's CSV and JSON loggers, then one logger callback per name in ``names``.

    Tune adds a TensorBoard logger on its own whenever tensorboardX imports (ray[tune]
    installs it); ``tune_env`` turns Tune's automatic loggers off so that event files are
    written only when asked for, and the CSV and JSON loggers are added here instead.

    - tensorboard: event files in every trial's directory (``tensorboard --logdir DIR``);
    - wandb: one W&B run per trial in project ``experiment`` (set WANDB_API_KEY, or
      WANDB_MODE=offline);
    - mlflow: one MLflow run per trial in experiment ``experiment``; the tracking URI is
      MLFLOW_TRACKING_URI, else ``experiment_dir/mlruns`` for a local experiment.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    check_loggers(names)
    callbacks: list[Callback] = [CSVLoggerCallback(), JsonLoggerCallback()]
    for name in dict.fromkeys(names):  # a repeated --logger adds one callback
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            callbacks.append(TBXLoggerCallback())
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            callbacks.append(WandbLoggerCallback(project=experiment))
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
            if tracking_uri is None and experiment_dir and "://" not in experiment_dir:
                tracking_uri = (Path(experiment_dir) / "mlruns").resolve().as_uri()
            callbacks.append(
                MLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name=experiment)
            )
    return callbacks


# --- quiet start-up ------------------------------------------------------------------------

# Ray Data's V2 Parquet reader lists files with a pool of footer-reading actors, 32 by
# default, one worker process each: for a task's few shards that made Ray start workers
# faster than its start-up concurrency and warn ("N PYTHON worker processes have been
# started"). Two read a task's footers as fast.
PARQUET_FOOTER_ACTORS = 2


def tune_env() -> dict[str, str]:
    """Environment variables the driver sets before Tuner.fit (setdefault: a user's wins)."""
    return {
        # Tune's new output engine ignores CLIReporter; the classic one prints our columns.
        "RAY_AIR_NEW_OUTPUT": "0",
        # Checkpointing every iteration is deliberate (fault tolerance); don't warn about it.
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
        # Loggers are chosen by logger_callbacks (--logger), not added by Tune on its own.
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    }


def worker_env() -> dict[str, str]:
    """Environment variables for every Ray worker (runtime_env env_vars)."""
    return {"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": str(PARQUET_FOOTER_ACTORS)}


def ray_init_settings(address: str | None, num_cpus: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ray.init`` (beyond resources) that keep start-up quiet.

    Also turns token authentication on in this process when RAY_AUTH_MODE is unset:

    - Token authentication: a new local Ray turns it on and warns that it did unless
      RAY_AUTH_MODE says so; we turn it on first, Ray's own default, so nothing changes but
      the warning. Where no token exists yet, Ray would write a new one to
      ``~/.ray/auth_token``, and a later ``ray start --head`` on this machine would find it
      and turn authentication on for a cluster (whose joining nodes then need
      ``RAY_AUTH_MODE=token``). So the private instance gets a fresh token in this process's
      environment (``RAY_AUTH_TOKEN``, inherited by the nodes and workers it starts), and
      nothing is written to the home directory. Joining a cluster (--address), we leave
      authentication to the cluster: turning it on in the driver would also turn it on for
      any node this process starts, which then cannot talk to a cluster that runs without
      tokens.
    - Worker start-up: Ray allows min(cores, logical CPUs) workers to start at once and
      warns once four times that many are alive. Trials, their Ray Data tasks and actors
      on the extra logical CPUs kept for Ray Data outnumber the cores of a small machine,
      so a local Ray allows as many start-ups as logical CPUs.
    """
    settings: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if "RAY_AUTH_MODE" not in os.environ and address is None:
        # Ray's own switch: sets RAY_AUTH_MODE=token for this process and its children and
        # refreshes the setting Ray read when it was imported (the variable alone is too late).
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
        _token_in_environment()
    if address is None and num_cpus is not None:
        settings["_system_config"] = {"worker_maximum_startup_concurrency": int(num_cpus)}
    return settings


def _token_in_environment() -> None:
    """A fresh token in RAY_AUTH_TOKEN unless Ray already finds one (variable or file)."""
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    if loader.has_token(ignore_auth_mode=True):
        return
    os.environ["RAY_AUTH_TOKEN"] = generate_new_authentication_token()
    loader.reset_cache()
