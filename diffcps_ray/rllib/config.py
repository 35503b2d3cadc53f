"""DiffCPSConfig: the AlgorithmConfig of the DiffCPS RLlib Algorithm.

Every DiffCPS hyper-parameter is a field of ``diffcps_ray.algorithm.config.DiffCPSSettings``
(one source of truth for defaults and bounds); this config declares each field as an
attribute and a documented ``.training()`` keyword, as RLlib's own configs do (a test keeps
them equal to the dataclass's fields). A field left at ``None`` takes the task's default
from the spec's per-task table (``DiffCPSSettings.for_task``), so

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
from ray.rllib.utils.annotations import override

from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.errors import ConfigError

# The DiffCPS fields (training() declares each; tests check they match the dataclass).
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

        # DiffCPS hyper-parameters (DiffCPSSettings fields, documented in training());
        # None = the task's default (DiffCPSSettings.for_task). gamma replaces RLlib's.
        self.T: int | None = None
        self.beta_schedule: str | None = None
        self.vp_beta_min: float | None = None
        self.vp_beta_max: float | None = None
        self.hidden_dim: int | None = None
        self.time_embed_dim: int | None = None
        self.max_action: float | None = None
        self.gamma: float | None = None
        self.tau: float | None = None
        self.batch_size: int | None = None
        self.max_q_backup: bool | None = None
        self.num_backup_samples: int | None = None
        self.reward_tune: str | None = None
        self.actor_lr: float | None = None
        self.critic_lr: float | None = None
        self.lambda_lr: float | None = None
        self.grad_norm: float | None = None
        self.freq: int | None = None
        self.lr_decay: bool | None = None
        self.lr_decay_steps: int | None = None
        self.lr_decay_interval: int | None = None
        self.lambda_init: float | None = None
        self.kappa: float | None = None
        self.lambda_clip: float | None = None
        self.lambda_max: float | None = None
        self.ema_decay: float | None = None
        self.ema_interval: int | None = None
        self.ema_start_step: int | None = None
        self.num_eval_candidates: int | None = None
        self.num_epochs: int | None = None
        self.steps_per_epoch: int | None = None
        self.eval_interval_epochs: int | None = None
        self.eval_episodes: int | None = None
        self.extra: dict[str, Any] | None = None

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

    @override(AlgorithmConfig)
    def environment(self, env: Any = NotProvided, *, task: str | None = NotProvided,
                    **kwargs: Any) -> DiffCPSConfig:
        """Also takes ``task``: a registry name; sets observation/action spaces from it."""
        super().environment(env=env, **kwargs)
        if task is not NotProvided:
            self.task = task
            if task is not None:
                self._set_spaces_from_task()
        return self

    @override(AlgorithmConfig)
    def offline_data(self, *, data_root: str | Path | None = NotProvided,
                     **kwargs: Any) -> DiffCPSConfig:
        """Also takes ``data_root``: ``input_`` becomes ``data_root/<task>``.

        ``input_`` may name a task directory (manifest.json + part-*.parquet) directly.
        """
        super().offline_data(**kwargs)
        if data_root is not NotProvided:
            self.data_root = None if data_root is None else str(data_root)
        return self

    @override(AlgorithmConfig)
    def training(
        self,
        *,
        T: int | None = NotProvided,
        beta_schedule: str | None = NotProvided,
        vp_beta_min: float | None = NotProvided,
        vp_beta_max: float | None = NotProvided,
        hidden_dim: int | None = NotProvided,
        time_embed_dim: int | None = NotProvided,
        max_action: float | None = NotProvided,
        gamma: float | None = NotProvided,
        tau: float | None = NotProvided,
        batch_size: int | None = NotProvided,
        max_q_backup: bool | None = NotProvided,
        num_backup_samples: int | None = NotProvided,
        reward_tune: str | None = NotProvided,
        actor_lr: float | None = NotProvided,
        critic_lr: float | None = NotProvided,
        lambda_lr: float | None = NotProvided,
        grad_norm: float | None = NotProvided,
        freq: int | None = NotProvided,
        lr_decay: bool | None = NotProvided,
        lr_decay_steps: int | None = NotProvided,
        lr_decay_interval: int | None = NotProvided,
        lambda_init: float | None = NotProvided,
        kappa: float | None = NotProvided,
        lambda_clip: float | None = NotProvided,
        lambda_max: float | None = NotProvided,
        ema_decay: float | None = NotProvided,
        ema_interval: int | None = NotProvided,
        ema_start_step: int | None = NotProvided,
        num_eval_candidates: int | None = NotProvided,
        num_epochs: int | None = NotProvided,
        steps_per_epoch: int | None = NotProvided,
        eval_interval_epochs: int | None = NotProvided,
        eval_episodes: int | None = NotProvided,
        extra: dict[str, Any] | None = NotProvided,
        gradient_steps_per_iteration: int | None = NotProvided,
        **kwargs: Any,
    ) -> DiffCPSConfig:
        """Sets the DiffCPS hyper-parameters (and RLlib's training settings, ``**kwargs``).

        Every DiffCPS argument defaults to the task's value (the per-task table,
        ``DiffCPSSettings.for_task``, with the authors' defaults, given in brackets
        below); passing None puts a set value back to it. Values are checked by
        ``validate()``. RLlib's own ``lr``, ``train_batch_size_per_learner``,
        ``grad_clip``, ... are not used and fail validation (see ``UNUSED_RLLIB_FIELDS``).

        Args:
            T: Diffusion steps of the policy (paper: 5 for every task).
            beta_schedule: Noise schedule; only "vp" (variance preserving, the paper's).
            vp_beta_min: Smallest beta of the vp schedule (0.1).
            vp_beta_max: Largest beta of the vp schedule (10.0); above vp_beta_min.
            hidden_dim: Width of the actor's and critics' hidden layers (256).
            time_embed_dim: Size of the diffusion-step embedding (16; even, at least 4).
            max_action: Actions and the denoiser's x0 estimate are clamped to
                [-max_action, max_action] (1.0).
            gamma: Discount factor in (0, 1] (0.99). DiffCPS's own: RLlib's learners are
                not used.
            tau: Polyak rate of the target critics, applied every gradient step (0.005).
            batch_size: Rows per gradient step on each learner (256); with num_learners=N
                one step sees N * batch_size rows.
            max_q_backup: Max-Q backup: the critic target takes the max over
                num_backup_samples next actions (AntMaze).
            num_backup_samples: Next actions per next state for the max-Q backup (10).
            reward_tune: "none" or "cql_antmaze" (r' = (r - 0.5) * 4), applied to the data.
            actor_lr: Adam learning rate of the actor (3e-4).
            critic_lr: Adam learning rate of the twin critics (3e-4).
            lambda_lr: Adam learning rate of the Lagrange multiplier lambda (3e-5).
            grad_norm: Max L2 norm of each optimiser's gradients; <= 0 disables clipping.
            freq: Actor and lambda update every freq gradient steps (the paper's d; 2).
            lr_decay: Cosine learning-rate decay on all three optimisers (False).
            lr_decay_steps: Cosine period in scheduler steps (2000).
            lr_decay_interval: Gradient steps per scheduler step (50000).
            lambda_init: Initial value of lambda (>= 0).
            kappa: Constraint level on the diffusion loss (paper eq. [eta2]); positive.
            lambda_clip: Lower clamp of lambda where it is used (>= 0, at most lambda_max).
            lambda_max: Upper clamp of lambda where it is used (100).
            ema_decay: Decay of the actor's EMA copy, in [0, 1) (0.995).
            ema_interval: The EMA actor updates every ema_interval gradient steps (5).
            ema_start_step: The EMA actor's first update is at this gradient step (1000);
                before, it keeps its initial weights.
            num_eval_candidates: Actions sampled per state at evaluation, one drawn from
                softmax(Q) (50).
            num_epochs: Length of the authors' runs in epochs (training protocol only).
            steps_per_epoch: Gradient steps per epoch (1000); the default of
                gradient_steps_per_iteration.
            eval_interval_epochs: Epochs between evaluations (50); the default of
                eval_interval.
            eval_episodes: Episodes per evaluation (10; 100 for AntMaze).
            extra: Free-form notes kept with the settings (ignored by the method).
            gradient_steps_per_iteration: Gradient steps per ``train()`` call on each
                learner (None: steps_per_epoch, one of the authors' epochs).
            **kwargs: RLlib's ``AlgorithmConfig.training`` arguments.

        Returns:
            This updated config.
        """
        super().training(**kwargs)
        if T is not NotProvided:
            self.T = T
        if beta_schedule is not NotProvided:
            self.beta_schedule = beta_schedule
        if vp_beta_min is not NotProvided:
            self.vp_beta_min = vp_beta_min
        if vp_beta_max is not NotProvided:
            self.vp_beta_max = vp_beta_max
        if hidden_dim is not NotProvided:
            self.hidden_dim = hidden_dim
        if time_embed_dim is not NotProvided:
            self.time_embed_dim = time_embed_dim
        if max_action is not NotProvided:
            self.max_action = max_action
        if gamma is not NotProvided:
            self.gamma = gamma
        if tau is not NotProvided:
            self.tau = tau
        if batch_size is not NotProvided:
            self.batch_size = batch_size
        if max_q_backup is not NotProvided:
            self.max_q_backup = max_q_backup
        if num_backup_samples is not NotProvided:
            self.num_backup_samples = num_backup_samples
        if reward_tune is not NotProvided:
            self.reward_tune = reward_tune
        if actor_lr is not NotProvided:
            self.actor_lr = actor_lr
        if critic_lr is not NotProvided:
            self.critic_lr = critic_lr
        if lambda_lr is not NotProvided:
            self.lambda_lr = lambda_lr
        if grad_norm is not NotProvided:
            self.grad_norm = grad_norm
        if freq is not NotProvided:
            self.freq = freq
        if lr_decay is not NotProvided:
            self.lr_decay = lr_decay
        if lr_decay_steps is not NotProvided:
            self.lr_decay_steps = lr_decay_steps
        if lr_decay_interval is not NotProvided:
            self.lr_decay_interval = lr_decay_interval
        if lambda_init is not NotProvided:
            self.lambda_init = lambda_init
        if kappa is not NotProvided:
            self.kappa = kappa
        if lambda_clip is not NotProvided:
            self.lambda_clip = lambda_clip
        if lambda_max is not NotProvided:
            self.lambda_max = lambda_max
        if ema_decay is not NotProvided:
            self.ema_decay = ema_decay
        if ema_interval is not NotProvided:
            self.ema_interval = ema_interval
        if ema_start_step is not NotProvided:
            self.ema_start_step = ema_start_step
        if num_eval_candidates is not NotProvided:
            self.num_eval_candidates = num_eval_candidates
        if num_epochs is not NotProvided:
            self.num_epochs = num_epochs
        if steps_per_epoch is not NotProvided:
            self.steps_per_epoch = steps_per_epoch
        if eval_interval_epochs is not NotProvided:
            self.eval_interval_epochs = eval_interval_epochs
        if eval_episodes is not NotProvided:
            self.eval_episodes = eval_episodes
        if extra is not NotProvided:
            self.extra = extra
        if gradient_steps_per_iteration is not NotProvided:
            self.gradient_steps_per_iteration = gradient_steps_per_iteration
        return self

    @override(AlgorithmConfig)
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
        super().evaluation(**kwargs)
        if eval_interval is not NotProvided:
            self.eval_interval = eval_interval
        if eval_episodes is not NotProvided:
            self.eval_episodes = eval_episodes
        if eval_num_envs is not NotProvided:
            self.eval_num_envs = eval_num_envs
        if eval_seed is not NotProvided:
            self.eval_seed = eval_seed
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

    @override(AlgorithmConfig)
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

    @override(AlgorithmConfig)
    def get_default_learner_class(self) -> type:
        from diffcps_ray.rllib.learner import DiffCPSTorchLearner

        return DiffCPSTorchLearner

    @override(AlgorithmConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from diffcps_ray.rllib.rl_module import DiffCPSTorchRLModule

        return RLModuleSpec(module_class=DiffCPSTorchRLModule)

    @property
    @override(AlgorithmConfig)
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
