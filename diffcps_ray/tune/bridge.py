"""Trial config (the flat dict Tune samples) -> a DiffCPS Algorithm from diffcps_ray.rllib."""

from __future__ import annotations

from typing import Any


def effective_lambda_clip(config: dict[str, Any]) -> float:
    """The sampled lambda_clip, with the range's floor meaning exactly 0 (see suites.py)."""
    value = float(config["lambda_clip"])
    zero_below = float(config.get("run", {}).get("lambda_clip_zero_below", 0.0))
    return 0.0 if value <= zero_below * (1 + 1e-9) else value


def algorithm_config(config: dict[str, Any]) -> Any:
    """The DiffCPSConfig of one trial: the task's table row, the overrides, kappa, lambda_clip.

    Everything runs in the trial's process (one local learner, evaluation in-process), so
    a trial needs exactly the CPUs/GPUs Tune gave it.
    """
    from diffcps_ray.rllib.config import DiffCPSConfig

    run = config["run"]
    gpus = float(run.get("num_gpus", 0.0))
    return (
        DiffCPSConfig()
        .environment(task=config["task"])
        .offline_data(data_root=run["data_root"])
        .training(
            **config.get("settings", {}),
            kappa=float(config["kappa"]),
            lambda_clip=effective_lambda_clip(config),
            gradient_steps_per_iteration=int(run["steps_per_iteration"]),
        )
        .evaluation(eval_interval=int(run["eval_interval"]),
                    eval_episodes=int(run["eval_episodes"]))
        .learners(num_learners=0, num_gpus_per_learner=gpus)
        .debugging(seed=int(config["seed"]), log_level="ERROR")
    )


def build_diffcps(config: dict[str, Any]) -> Any:
    return algorithm_config(config).build_algo()
