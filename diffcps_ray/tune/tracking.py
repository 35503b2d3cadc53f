"""Experiment tracking for a sweep's trials: Tune's CSV and JSON loggers (the analysis reads
result.json) and the trackers ``--logger`` asks for (TensorBoard, Weights & Biases, MLflow).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ray.tune import Callback

from diffcps_ray.errors import ConfigError

# --logger NAME -> (module that must import, pip extra of diffcps-ray that installs it).
LOGGER_PACKAGES = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


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
    installs it); ``ray_start.tune_env`` turns Tune's automatic loggers off so that event files are
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


