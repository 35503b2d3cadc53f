"""DiffCPSConfig: the AlgorithmConfig of the DiffCPS RLlib Algorithm.

Every DiffCPS hyper-parameter is a field of ``diffcps_ray.algorithm.config.DiffCPSSettings``
(one source of truth, with the authors' defaults); this config mirrors those fields as
attributes and ``.training()`` keywords without retyping them. A field left at ``None``
takes the task's default from the spec's per-task table (``DiffCPSSettings.for_task``), so

    DiffCPSConfig().environment(task="hopper-medium-v2")
        .offline_data(data_root="data")
        .training(kappa=0.04, lambda_clip=0.1, gradient_steps_per_iteration=1000)
        .evaluation(eval_interval=50, eval_episodes=10)

is hopper's table row with kappa and lambda_clip changed. ``gamma`` is DiffCPS's field
here (RLlib's own learners are not used). RLlib fields that DiffCPS does not read (``lr``,
``train_batch_size_per_learner``, ``grad_clip``, ...; see ``UNUSED_RLLIB_FIELDS``) make
``validate()`` fail with a sentence naming the DiffCPS field to set instead: learning
rates are ``actor_lr``, ``critic_lr`` and ``lambda_lr``, the batch is ``batch_size``.

``batch_size`` is per learner: with ``num_learners=N`` each learner draws ``batch_size``
rows from its own disjoint share and gradients are averaged, so one gradient step sees
``N * batch_size`` rows (set ``batch_size=256 // N`` to keep the paper's 256).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.errors import ConfigError

# The DiffCPS fields, read off the dataclass (never retyped here).
DIFFCPS_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DiffCPSSettings))

UNUSED_RLLIB_FIELDS: dict[str, tuple[str, str]] = {
    # RLlib field: (the attribute holding it, what to set instead).
    "lr": ("lr", "actor_lr, critic_lr and lambda_lr in config.training()"),
    "train_batch_size_per_learner": (
        "_train_batch_size_per_learner", "batch_size (rows per gradient step on each "
        "learner) in config.training()"),
    "train_batch_size": ("train_batch_size", "batch_size in config.training()"),
    "minibatch_size": ("minibatch_size", "batch_size in config.training()"),
    "grad_clip": ("grad_clip", "grad_norm (each optimiser's gradient-norm limit) in "
                  "config.training()"),
    "grad_clip_by": ("grad_clip_by", "grad_norm (each optimiser's global gradient norm) in "
                     "config.training()"),
    "dataset_num_iters_per_learner": (
        "dataset_num_iters_per_learner", "gradient_steps_per_iteration in config.training()"),
    "evaluation_interval": ("evaluation_interval", "eval_interval in config.evaluation()"),
    "evaluation_duration": ("evaluation_duration", "eval_episodes in config.evaluation()"),
    "evaluation_num_env_runners": (
        "evaluation_num_env_runners", "eval_num_envs (simulators stepped together in the "
        "Algorithm's process) in config.evaluation()"),
    "num_env_runners": ("num_env_runners", "num_learners in config.learners() to train on "
                        "more processes (DiffCPS samples its data, not env runners)"),
}  # fmt: skip
"""RLlib config fields that DiffCPS never reads. Set to anything but RLlib's default, they
make ``validate()`` fail rather than be silently ignored."""


@functools.cache
def _rllib_defaults() -> dict[str, Any]:
    defaults = AlgorithmConfig()
    return {attr: getattr(defaults, attr) for attr, _ in UNUSED_RLLIB_FIELDS.values()}


class DiffCPSConfig(AlgorithmConfig):
    """Builds a ``DiffCPS`` Algorithm: offline, new API stack, one task at a time."""

    def __init__(self, algo_class: type | None = None):
        from diffcps_ray.rllib.algorithm import DiffCPS

        super().__init__(algo_class=algo_class or DiffCPS)
        self._is_online = False

        # DiffCPS hyper-parameters; None = the task's default (DiffCPSSettings.for_task).
        for name in DIFFCPS_FIELDS:
            setattr(self, name, None)

        # The task (registry name) and where its shards live.
        self.task: str | None = None
        self.data_root: str | None = None

        # One training iteration = this many gradient steps on each learner.
        # None: the settings' steps_per_epoch (1000, one of the authors' epochs).
        self.gradient_steps_per_iteration: int | None = None

        # Simulator evaluation (batched episodes in the driver), in training iterations.
        # Separate from RLlib's env-runner `evaluation_interval`, which stays off.
        # None: the settings' eval_interval_epochs (50). The number of episodes is the
        # DiffCPS field eval_episodes (task default: 10, or 100 for AntMaze).
        self.eval_interval: int | None = None
        self.eval_num_envs: int | None = None  # None: evaluate_policy's default
        self.eval_seed = 1_000_003

        # Data reach the learners through Ray Data, not per-batch OfflinePreLearner.
        from diffcps_ray.rllib.offline_data import DiffCPSOfflineData

        self.offline_data_class = DiffCPSOfflineData
        self.num_learners = 0
        # Exactly one training_step (= one batch of gradient steps) per train() call.
        self.min_time_s_per_iteration = None
        self.min_train_timesteps_per_iteration = 0
        self.min_sample_timesteps_per_iteration = 0

    # --- builder methods -----------------------------------------------------------------

    def environment(self, env: Any = NotProvided, *, task: str | None = NotProvided,
                    **kwargs: Any) -> DiffCPSConfig:
        """Also takes ``task``: a registry name; sets observation/action spaces from it."""
        super().environment(env=env, **kwargs)
        if task is not NotProvided:
            self.task = task
            if task is not None:
                self._set_spaces_from_task()
        return self

    def offline_data(self, *, data_root: str | Path | None = NotProvided,
                     **kwargs: Any) -> DiffCPSConfig:
        """Also takes ``data_root``: ``input_`` becomes ``data_root/<task>``.

        ``input_`` may name a task directory (manifest.json + part-*.parquet) directly.
        """
        super().offline_data(**kwargs)
        if data_root is not NotProvided:
            self.data_root = None if data_root is None else str(data_root)
        return self

    def training(self, *, gradient_steps_per_iteration: int | None = NotProvided,
                 **kwargs: Any) -> DiffCPSConfig:
        """RLlib's training settings plus every ``DiffCPSSettings`` field by name.

        ``gradient_steps_per_iteration``: gradient steps per ``train()`` call (None: the
        settings' ``steps_per_epoch``, 1000, one of the authors' epochs). A DiffCPS field
        set to None goes back to the task's default.
        """
        own = {name: kwargs.pop(name) for name in list(kwargs) if name in DIFFCPS_FIELDS}
        if kwargs:
            super().training(**kwargs)
        for name, value in own.items():
            if value is not NotProvided:
                setattr(self, name, value)
        if gradient_steps_per_iteration is not NotProvided:
            self.gradient_steps_per_iteration = gradient_steps_per_iteration
        return self

    def evaluation(self, *, eval_interval: int | None = NotProvided,
                   eval_episodes: int | None = NotProvided,
                   eval_num_envs: int | None = NotProvided, eval_seed: int = NotProvided,
                   **kwargs: Any) -> DiffCPSConfig:
        """DiffCPS's simulator evaluation (batched, in the driver).

        ``eval_interval``: every this many training iterations (0: never; None: the
        settings' eval_interval_epochs). ``eval_episodes``: the DiffCPS field (None: the
        task's default, 10, or 100 for AntMaze).
        ``eval_num_envs``: simulators stepped together; ``eval_seed``: the base seed.
        Other keywords are RLlib's (its env-runner evaluation is not used).
        """
        if kwargs:
            super().evaluation(**kwargs)
        for name, value in (("eval_interval", eval_interval), ("eval_episodes", eval_episodes),
                            ("eval_num_envs", eval_num_envs), ("eval_seed", eval_seed)):
            if value is not NotProvided:
                setattr(self, name, value)
        return self

    # --- resolved values -----------------------------------------------------------------

    def get_diffcps_settings(self) -> DiffCPSSettings:
        """The resolved, validated settings: the task's table row, then every field set here.

        Raises ConfigError (one plain sentence) for a value out of range, e.g. kappa <= 0,
        lambda_clip < 0 or > lambda_max, T < 1.
        """
        overrides = {name: getattr(self, name) for name in DIFFCPS_FIELDS
                     if getattr(self, name) is not None}
        if self.task is None:
            return DiffCPSSettings().replace(**overrides)
        return DiffCPSSettings.for_task(self.task, **overrides)

    @property
    def task_spec(self) -> Any:
        from diffcps_ray.envs.tasks import get_task

        if self.task is None:
            raise ConfigError("No task is set: use config.environment(task=...).")
        return get_task(self.task)

    @property
    def resolved_gradient_steps(self) -> int:
        if self.gradient_steps_per_iteration is not None:
            return int(self.gradient_steps_per_iteration)
        return int(self.get_diffcps_settings().steps_per_epoch)

    @property
    def resolved_eval_interval(self) -> int:
        if self.eval_interval is not None:
            return int(self.eval_interval)
        return int(self.get_diffcps_settings().eval_interval_epochs)

    @property
    def resolved_eval_episodes(self) -> int:
        return int(self.get_diffcps_settings().eval_episodes)

    def resolved_input(self) -> Path:
        """The task directory the shards are read from (raises if it has no manifest)."""
        from diffcps_ray.data import shards

        if self.input_ and self.input_ != "sampler":
            path = Path(str(self.input_)).expanduser()
            if not (path / "manifest.json").is_file():
                if self.task is not None:
                    hint = shards.how_to_make(self.task, path.parent)
                    raise shards.MissingDataError(
                        f"No shards for task {self.task!r} in {path}: {hint}."
                    )
                raise shards.MissingDataError(
                    f"{path} holds no manifest.json: make or convert the task's data with "
                    f"`python -m diffcps_ray.data` first."
                )
            return path
        if self.data_root is None:
            raise ConfigError(
                "No data given: use config.offline_data(data_root=DIR) or "
                "config.offline_data(input_=DIR/<task>)."
            )
        return shards.task_dir(self.data_root, self.task_spec.name)

    # --- validation ----------------------------------------------------------------------

    def validate(self) -> None:
        """RLlib's checks, then DiffCPS's: each failure is one plain sentence."""
        self._validate_diffcps()
        super().validate()

    def _validate_diffcps(self) -> None:
        if not self._validate_config:
            return
        self._reject_unused_rllib_fields()
        spec = self.task_spec  # unknown task -> UnknownTaskError naming close matches
        if self.observation_space is None or self.action_space is None:
            self._set_spaces_from_task()
        self.get_diffcps_settings()  # validates every DiffCPS field (plain sentences)
        # Data: resolve input_ to the task directory and check its manifest matches.
        path = self.resolved_input()
        self.input_ = str(path)
        from diffcps_ray.data import shards

        manifest = shards.read_manifest(path)
        if (manifest.obs_dim, manifest.act_dim) != (spec.obs_dim, spec.act_dim):
            # (Same dims but another task name is allowed: e.g. AntMaze v0 vs v2 data.)
            raise ConfigError(
                f"{path} holds data for {manifest.task!r} ({manifest.obs_dim}-dim observations,"
                f" {manifest.act_dim}-dim actions), not for task {spec.name!r} "
                f"({spec.obs_dim} and {spec.act_dim})."
            )
        if self.gradient_steps_per_iteration is not None:
            self._check_positive_int("gradient_steps_per_iteration",
                                     self.gradient_steps_per_iteration)
        if self.eval_interval is not None:
            self._check_positive_int("eval_interval", self.eval_interval, allow_zero=True)
        if self.eval_num_envs is not None:
            self._check_positive_int("eval_num_envs", self.eval_num_envs)

    def _reject_unused_rllib_fields(self) -> None:
        defaults = _rllib_defaults()
        for name, (attr, instead) in UNUSED_RLLIB_FIELDS.items():
            value = getattr(self, attr)
            if value != defaults[attr]:
                raise ConfigError(
                    f"DiffCPS does not use RLlib's {name} (set to {value!r}): set {instead} "
                    "instead."
                )

    @staticmethod
    def _check_positive_int(name: str, value: Any, allow_zero: bool = False) -> None:
        low = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            bound = "0 or more" if allow_zero else "at least 1"
            raise ConfigError(f"{name} must be an integer {bound}, got {value!r}.")

    # --- RLlib hooks ---------------------------------------------------------------------

    def _set_spaces_from_task(self) -> None:
        spec = self.task_spec
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float32)
        # Actions are normalised to [-1, 1] everywhere (data, sampler, simulators).
        self.action_space = gym.spaces.Box(-1.0, 1.0, (spec.act_dim,), np.float32)

    def get_default_learner_class(self) -> type:
        from diffcps_ray.rllib.learner import DiffCPSTorchLearner

        return DiffCPSTorchLearner

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from diffcps_ray.rllib.rl_module import DiffCPSTorchRLModule

        return RLModuleSpec(module_class=DiffCPSTorchRLModule)

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        from diffcps_ray.rllib.rl_module import SEED_KEY, SETTINGS_KEY

        return super()._model_config_auto_includes | {
            SETTINGS_KEY: dataclasses.asdict(self.get_diffcps_settings()),
            SEED_KEY: 0 if self.seed is None else int(self.seed),
        }


def register_task_env(task: str) -> str:
    """Register ``task``'s simulator with RLlib under ``diffcps/<task>``; return that name.

    Only needed to act with RLlib's own env runners
    (``config.environment(register_task_env(task), task=task)``); DiffCPS's evaluation
    steps the simulators itself.
    """
    from ray.tune.registry import register_env

    from diffcps_ray.envs.tasks import get_task

    spec = get_task(task)
    name = f"diffcps/{spec.name}"
    register_env(name, lambda env_config: spec.make_env(seed=env_config.get("seed")))
    return name
