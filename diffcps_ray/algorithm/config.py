"""DiffCPS settings: every constant of the method, with the authors' defaults.

Defaults are those of the authors' implementation (DiffCPS on the Diffusion-QL code base,
see docs/method.md); where the paper says something else the field's comment says so.
``TASK_SETTINGS`` is the per-task table (paper Table 3 plus the implementation's ``gn``
and initial lambda); :meth:`DiffCPSSettings.for_task` applies it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from diffcps_ray.errors import ConfigError, UnknownTaskError, validation_sentence

BETA_SCHEDULES = ("vp",)
REWARD_TUNES = ("none", "cql_antmaze")


def _not_bool(kind: str) -> BeforeValidator:
    """Reject True/False where a number is meant (pydantic would read them as 1/0)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(f"{kind}_type", "not a {kind}", {"kind": kind})
        return value

    return BeforeValidator(check)


# Field types: pydantic reads command-line strings and numpy scalars as these (lossless
# only: 2.5 is not an int) and checks the bounds; validate() turns an error into a sentence.
Int = Annotated[int, _not_bool("int")]
Count = Annotated[Int, Field(ge=1)]
Real = Annotated[float, _not_bool("float"), Field(allow_inf_nan=False)]
Positive = Annotated[Real, Field(gt=0)]
NonNegative = Annotated[Real, Field(ge=0)]
Fraction = Annotated[Real, Field(gt=0, le=1)]


@dataclass
class DiffCPSSettings:
    """Every constant of DiffCPS. Field names follow the paper where it names the thing.

    Each field's type states what it accepts (see ``validate``).
    """

    # --- diffusion policy ---------------------------------------------------------------
    T: Annotated[Count, Field(title="the number of diffusion steps")] = 5
    """The number of diffusion steps (paper: T=5 for all tasks; authors' n_timesteps)."""
    beta_schedule: Literal[BETA_SCHEDULES] = "vp"
    """Noise schedule; only the variance-preserving ("vp") schedule of the paper."""
    vp_beta_min: Positive = 0.1
    vp_beta_max: Positive = 10.0
    hidden_dim: Count = 256
    time_embed_dim: Annotated[Int, Field(ge=4, multiple_of=2)] = 16
    max_action: Positive = 1.0
    """Actions and the denoiser's x0 estimate are clamped to [-max_action, max_action]."""

    # --- RL ------------------------------------------------------------------------------
    gamma: Fraction = 0.99
    tau: Fraction = 0.005
    """Polyak rate of the target critics (every step)."""
    batch_size: Count = 256
    max_q_backup: bool = False
    num_backup_samples: Count = 10
    """Next actions per next state for the max-Q backup."""
    reward_tune: Literal[REWARD_TUNES] = "none"
    """"none" or "cql_antmaze" (r' = (r - 0.5) * 4); applied to the data, not per step."""

    # --- optimisation ----------------------------------------------------------------------
    actor_lr: Positive = 3e-4
    critic_lr: Positive = 3e-4
    """Fixed for every task in the implementation (the paper's table lists one lr)."""
    lambda_lr: Positive = 3e-5
    grad_norm: Real = 9.0
    """gn: max L2 norm of each optimiser's gradients; <= 0 disables clipping."""
    freq: Count = 2
    """Policy (actor and lambda) update interval d; they update when step % freq == 0."""
    lr_decay: bool = False
    """Cosine lr decay on all three optimisers (inert in the authors' runs)."""
    lr_decay_steps: Count = 2000
    """Cosine period T_max in scheduler steps (authors: lr_maxt = number of epochs)."""
    lr_decay_interval: Count = 50_000
    """Gradient steps per scheduler step (authors: once per 50 epochs of 1000 steps)."""

    # --- Lagrange multiplier -------------------------------------------------------------
    lambda_init: NonNegative = 1.0
    kappa: Annotated[Positive, Field(description="it bounds the diffusion loss")] = 0.05
    """Constraint level on L_c (paper eq. [eta2]); on the per-dimension MSE scale."""
    lambda_clip: Annotated[NonNegative, Field(description="lambda is a Lagrange multiplier")] = (
        0.0
    )
    """lambda_min: lambda is clamped to [lambda_clip, lambda_max] where it is used."""
    lambda_max: Positive = 100.0

    # --- targets -------------------------------------------------------------------------
    ema_decay: Annotated[Real, Field(ge=0, lt=1)] = 0.995
    ema_interval: Count = 5
    ema_start_step: Annotated[Int, Field(ge=0)] = 1000

    # --- evaluation ----------------------------------------------------------------------
    num_eval_candidates: Count = 50

    # --- training protocol (used by the training loop, not by the agent) ------------------
    num_epochs: Count = 2000
    steps_per_epoch: Count = 1000
    eval_interval_epochs: Count = 50
    eval_episodes: Count = 10

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Free-form notes (e.g. the task name); ignored by the algorithm."""

    @property
    def n_timesteps(self) -> int:
        """Alias of ``T`` (the implementation's name)."""
        return self.T

    def __post_init__(self) -> None:
        """Read numpy scalars and command-line strings as the declared field types.

        Values that cannot be read (or break a bound) are left as given, for
        :meth:`validate` to reject with a sentence.
        """
        for name, adapter in _FIELD_ADAPTERS.items():
            try:
                value = adapter.validate_python(getattr(self, name))
            except ValidationError:
                continue
            object.__setattr__(self, name, value)

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
        """Raise ConfigError with one plain sentence for the first invalid setting.

        Each field is checked against its declared type and bounds (by pydantic), then the
        settings that bound each other.
        """
        for name, adapter in _FIELD_ADAPTERS.items():
            try:
                adapter.validate_python(getattr(self, name))
            except ValidationError as error:
                sentence = validation_sentence(error, _FIELD_TYPES[name], (name,))
                raise ConfigError(f"{sentence}.") from None
        if self.vp_beta_min >= self.vp_beta_max:
            raise ConfigError("vp_beta_min and vp_beta_max must satisfy "
                              "0 < vp_beta_min < vp_beta_max.")  # fmt: skip
        if self.lambda_clip > self.lambda_max:
            raise ConfigError(f"lambda_clip ({self.lambda_clip}) must not exceed lambda_max "
                              f"({self.lambda_max}).")  # fmt: skip


_FIELD_TYPES = get_type_hints(DiffCPSSettings, include_extras=True)
_FIELD_ADAPTERS = {f.name: TypeAdapter(_FIELD_TYPES[f.name])
                   for f in dataclasses.fields(DiffCPSSettings)}  # fmt: skip

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
