"""A trial's config (TrialConfig, or Tune's dict of it) -> a DiffCPS Algorithm (rllib/)."""

from __future__ import annotations

from typing import Any

from diffcps_ray.tune.trial_config import TrialConfig


def algorithm_config(config: dict[str, Any] | TrialConfig) -> Any:
    """The DiffCPSConfig of one trial: the task's table row, the overrides, kappa, lambda_clip.

    Everything runs in the trial's process (one local learner, evaluation in-process), so
    a trial needs exactly the CPUs/GPUs Tune gave it.
    """
    from diffcps_ray.rllib.config import DiffCPSConfig

    trial = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    run = trial.run
    return (
        DiffCPSConfig()
        .environment(task=trial.task)
        .offline_data(data_root=run.data_root)
        .training(
            **trial.settings,
            kappa=trial.kappa,
            lambda_clip=trial.effective_lambda_clip,
            gradient_steps_per_iteration=run.steps_per_iteration,
        )
        .evaluation(eval_interval=run.eval_interval, eval_episodes=run.eval_episodes)
        .learners(num_learners=0, num_gpus_per_learner=run.num_gpus)
        .debugging(seed=trial.seed, log_level="ERROR")
    )


def build_diffcps(config: dict[str, Any] | TrialConfig) -> Any:
    return algorithm_config(config).build_algo()
