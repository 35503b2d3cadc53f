"""DiffCPS settings: every constant of the method, with the authors' defaults.

Defaults are those of the authors' implementation (DiffCPS on the Diffusion-QL code base,
see docs/method.md); where the paper says something else the field's comment says so.
``TASK_SETTINGS`` is the per-task table (paper Table 3 plus the implementation's ``gn``
and initial lambda); :meth:`DiffCPSSettings.for_task` applies it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diffcps_ray.errors import ConfigError, UnknownTaskError

BETA_SCHEDULES = ("vp",)
REWARD_TUNES = ("none", "cql_antmaze")


@dataclass
class DiffCPSSettings:
    """Every constant of DiffCPS. Field names follow the paper where it names the thing."""

    # --- diffusion policy ---------------------------------------------------------------
    T: int = 5
    """The number of diffusion steps (paper: T=5 for all tasks; authors' n_timesteps)."""
    beta_schedule: str = "vp"
    """Noise schedule; only the variance-preserving ("vp") schedule of the paper."""
    vp_beta_min: float = 0.1
    vp_beta_max: float = 10.0
    hidden_dim: int = 256
    time_embed_dim: int = 16
    max_action: float = 1.0
    """Actions and the denoiser's x0 estimate are clamped to [-max_action, max_action]."""

    # --- RL ------------------------------------------------------------------------------
    gamma: float = 0.99
    tau: float = 0.005
    """Polyak rate of the target critics (every step)."""
    batch_size: int = 256
    max_q_backup: bool = False
    num_backup_samples: int = 10
    """Next actions per next state for the max-Q backup."""
    reward_tune: str = "none"
    """"none" or "cql_antmaze" (r' = (r - 0.5) * 4); applied to the data, not per step."""

    # --- optimisation ----------------------------------------------------------------------
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    """Fixed for every task in the implementation (the paper's table lists one lr)."""
    lambda_lr: float = 3e-5
    grad_norm: float = 9.0
    """gn: max L2 norm of each optimiser's gradients; <= 0 disables clipping."""
    freq: int = 2
    """Policy (actor and lambda) update interval d; they update when step % freq == 0."""
    lr_decay: bool = False
    """Cosine lr decay on all three optimisers (inert in the authors' runs)."""
    lr_decay_steps: int = 2000
    """Cosine period T_max in scheduler steps (authors: lr_maxt = number of epochs)."""
    lr_decay_interval: int = 50_000
    """Gradient steps per scheduler step (authors: once per 50 epochs of 1000 steps)."""

    # --- Lagrange multiplier -------------------------------------------------------------
    lambda_init: float = 1.0
    kappa: float = 0.05
    """Constraint level on L_c (paper eq. [eta2]); on the per-dimension MSE scale."""
    lambda_clip: float = 0.0
    """lambda_min: lambda is clamped to [lambda_clip, lambda_max] where it is used."""
    lambda_max: float = 100.0

    # --- targets -------------------------------------------------------------------------
    ema_decay: float = 0.995
    ema_interval: int = 5
    ema_start_step: int = 1000

    # --- evaluation ----------------------------------------------------------------------
    num_eval_candidates: int = 50

    # --- training protocol (used by the training loop, not by the agent) ------------------
    num_epochs: int = 2000
    steps_per_epoch: int = 1000
    eval_interval_epochs: int = 50
    eval_episodes: int = 10

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Free-form notes (e.g. the task name); ignored by the algorithm."""

    @property
    def n_timesteps(self) -> int:
        """Alias of ``T`` (the implementation's name)."""
        return self.T

    def __post_init__(self) -> None:
        """Coerce numpy scalars and command-line strings to the declared field types.

        Values that cannot be read as the declared type are left for :meth:`validate`
        to reject with a sentence.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(value, f.type)
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def for_task(cls, task_name: str, **overrides: Any) -> DiffCPSSettings:
        """Settings of ``task_name`` from ``TASK_SETTINGS``, then ``overrides``, validated."""
        if task_name not in TASK_SETTINGS:
            close = difflib.get_close_matches(task_name, TASK_SETTINGS.keys(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownTaskError(f"No DiffCPS settings for task '{task_name}'.{hint}")
        settings = cls().replace(**TASK_SETTINGS[task_name])
        settings.extra = {"task": task_name}
        return settings.replace(**overrides)

    def replace(self, **overrides: Any) -> DiffCPSSettings:
        """A copy with ``overrides`` applied and validated; unknown keys raise ConfigError."""
        names = self.field_names()
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            suggestions = [m for k in unknown for m in difflib.get_close_matches(k, names, n=1)]
            hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
            raise ConfigError(f"Unknown DiffCPS setting(s): {', '.join(unknown)}.{hint}")
        new = dataclasses.replace(self, **overrides)
        new.validate()
        return new

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DiffCPSSettings:
        return cls().replace(**dict(values))

    def validate(self) -> None:
        """Raise ConfigError with one plain sentence for the first invalid setting."""

        def fail(message: str) -> None:
            raise ConfigError(message)

        ints = (
            "T", "hidden_dim", "time_embed_dim", "batch_size", "num_backup_samples",
            "freq", "ema_interval", "ema_start_step", "num_eval_candidates", "lr_decay_steps",
            "lr_decay_interval", "num_epochs", "steps_per_epoch", "eval_interval_epochs",
            "eval_episodes",
        )  # fmt: skip
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(f"{name} must be an integer, got {value!r}.")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and not isinstance(value, float):
                fail(f"{f.name} must be a number, got {value!r}.")
            if f.type == "str" and not isinstance(value, str):
                fail(f"{f.name} must be a string, got {value!r}.")
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"{f.name} must be a finite number, got {value!r}.")
        if self.T < 1:
            fail(f"T (the number of diffusion steps) must be at least 1, got {self.T}.")
        if self.beta_schedule not in BETA_SCHEDULES:
            fail(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}.")
        if not 0 < self.vp_beta_min < self.vp_beta_max:
            fail("vp_beta_min and vp_beta_max must satisfy 0 < vp_beta_min < vp_beta_max.")
        if self.time_embed_dim < 4 or self.time_embed_dim % 2:
            fail(f"time_embed_dim must be an even number >= 4, got {self.time_embed_dim}.")
        for name in ("hidden_dim", "batch_size", "num_backup_samples", "freq", "ema_interval",
                     "num_eval_candidates", "lr_decay_steps", "lr_decay_interval",
                     "num_epochs", "steps_per_epoch", "eval_interval_epochs", "eval_episodes"):
            if getattr(self, name) < 1:
                fail(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.ema_start_step < 0:
            fail(f"ema_start_step must be >= 0, got {self.ema_start_step}.")
        if self.max_action <= 0:
            fail(f"max_action must be positive, got {self.max_action}.")
        if not 0 < self.gamma <= 1:
            fail(f"gamma must be in (0, 1], got {self.gamma}.")
        if not 0 < self.tau <= 1:
            fail(f"tau must be in (0, 1], got {self.tau}.")
        if not 0 <= self.ema_decay < 1:
            fail(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        for name in ("actor_lr", "critic_lr", "lambda_lr"):
            if getattr(self, name) <= 0:
                fail(f"{name} must be positive, got {getattr(self, name)}.")
        if self.kappa <= 0:
            fail(f"kappa must be positive (it bounds the diffusion loss), got {self.kappa}.")
        if self.lambda_clip < 0:
            fail(f"lambda_clip must be >= 0 (lambda is a Lagrange multiplier), "
                 f"got {self.lambda_clip}.")  # fmt: skip
        if self.lambda_max <= 0:
            fail(f"lambda_max must be positive, got {self.lambda_max}.")
        if self.lambda_clip > self.lambda_max:
            fail(f"lambda_clip ({self.lambda_clip}) must not exceed lambda_max "
                 f"({self.lambda_max}).")  # fmt: skip
        if self.lambda_init < 0:
            fail(f"lambda_init must be >= 0, got {self.lambda_init}.")
        if self.reward_tune not in REWARD_TUNES:
            fail(f"reward_tune must be one of {REWARD_TUNES}, got {self.reward_tune!r}.")
        if not isinstance(self.max_q_backup, bool):
            fail(f"max_q_backup must be true or false, got {self.max_q_backup!r}.")
        if not isinstance(self.lr_decay, bool):
            fail(f"lr_decay must be true or false, got {self.lr_decay!r}.")


def _coerce(value: Any, type_name: Any) -> Any:
    """``value`` as ``type_name`` ("int", "float", "bool", "str") where that is lossless."""
    if type_name == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        return value
    if type_name == "int":
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return value
        if isinstance(value, bool):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return int(value)
        return value
    if type_name == "float":
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                return value
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    return value


def _locomotion(kappa: float, grad_norm: float) -> dict[str, Any]:
    return {
        "kappa": kappa, "grad_norm": grad_norm, "lambda_init": 1.0, "lambda_clip": 0.0,
        "freq": 2, "max_q_backup": False, "reward_tune": "none", "num_epochs": 2000,
        "eval_episodes": 10,
    }  # fmt: skip


def _antmaze(
    kappa: float, grad_norm: float, lambda_init: float, max_q: bool, freq: int, **extra: Any
) -> dict[str, Any]:
    return {
        "kappa": kappa, "grad_norm": grad_norm, "lambda_init": lambda_init,
        "lambda_clip": 0.3, "freq": freq, "max_q_backup": max_q,
        "reward_tune": "cql_antmaze", "num_epochs": 1000, "eval_episodes": 100, **extra,
    }  # fmt: skip


_ANTMAZE = {
    "umaze": _antmaze(0.2, 2.0, 3.0, max_q=False, freq=2),
    "umaze-diverse": _antmaze(0.09, 3.0, 3.0, max_q=True, freq=2),
    # lr 1e-3 for the actor only: the implementation keeps the critic at 3e-4 everywhere.
    "medium-play": _antmaze(0.3, 2.0, 1.0, max_q=True, freq=2, actor_lr=1e-3),
    "medium-diverse": _antmaze(0.2, 1.0, 1.0, max_q=True, freq=2),
    "large-play": _antmaze(0.2, 10.0, 0.5, max_q=True, freq=4),
    "large-diverse": _antmaze(0.2, 7.0, 0.5, max_q=True, freq=4),
}

TASK_SETTINGS: dict[str, dict[str, Any]] = {
    "halfcheetah-medium-v2": _locomotion(0.06, 9.0),
    "hopper-medium-v2": _locomotion(0.05, 9.0),
    "walker2d-medium-v2": _locomotion(0.03, 1.0),
    "halfcheetah-medium-replay-v2": _locomotion(0.06, 2.0),
    "hopper-medium-replay-v2": _locomotion(0.03, 4.0),
    "walker2d-medium-replay-v2": _locomotion(0.03, 4.0),
    "halfcheetah-medium-expert-v2": _locomotion(0.04, 7.0),
    "hopper-medium-expert-v2": _locomotion(0.03, 5.0),
    "walker2d-medium-expert-v2": _locomotion(0.04, 5.0),
    # The authors ran AntMaze on v0 (broken timeouts); v2 fixes the data. Same settings.
    **{f"antmaze-{name}-{version}": dict(values)
       for name, values in _ANTMAZE.items() for version in ("v0", "v2")},
    # Not in the paper: locally generated PointMaze data (docs/pointmaze.md) with
    # hopper-medium-like settings; rewards are used as generated.
    **{f"pointmaze-{maze}": _locomotion(0.05, 9.0) for maze in ("umaze", "medium", "large")},
}  # fmt: skip
"""Per-task overrides of the defaults (the table in docs/method.md)."""
