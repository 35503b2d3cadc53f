"""An evaluation env recorded with a dataset (a gymnasium spec), built like our own envs.

Minari datasets name the env they are meant to be evaluated in (metadata.json's
``eval_env_spec``, else ``env_spec``). The converter copies that into the task's manifest
as a plain record::

    {"kind": "gymnasium", "id": "AntMaze_UMaze-v4", "entry_point": "...",
     "kwargs": {...}, "max_episode_steps": 700, "obs_keys": ["achieved_goal", "observation"]}

and ``make_recorded_env`` turns it back into an env with our contract: flat float32
observations (dict observations concatenated in ``obs_keys`` order, exactly as the
converter flattened the data), actions in [-1, 1] (rescaled to the env's bounds where
those differ), ``info["success"]`` passed through from the env. For goal tasks an episode
ends at its first success: the score is the share of episodes that reached the goal, which
later steps cannot change (the D4RL AntMaze ports record continuing tasks that would draw
a new goal there and run on to the time limit).

"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from diffcps_ray.errors import DataError

RECORD_KIND = "gymnasium"


@dataclass(frozen=True)
class RecordedEnv:
    """A gymnasium env named by a dataset; frozen and hashable (kwargs kept as JSON)."""

    id: str
    kwargs_json: str = "{}"
    max_episode_steps: int | None = None
    # Dict observations are concatenated in this order; empty for Box observations.
    obs_keys: tuple[str, ...] = field(default_factory=tuple)
    entry_point: str | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return json.loads(self.kwargs_json)

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], where: str = "the eval_env record"
    ) -> RecordedEnv:
        """Parse a manifest record; a malformed one raises DataError naming ``where``."""
        if not isinstance(record, Mapping):
            raise DataError(f"{where} is not a JSON object.")
        if record.get("kind") != RECORD_KIND:
            raise DataError(
                f"{where} has kind {record.get('kind')!r}; only {RECORD_KIND!r} envs are known."
            )
        env_id = record.get("id")
        steps = record.get("max_episode_steps")
        kwargs = record.get("kwargs") or {}
        keys = record.get("obs_keys") or []
        if not isinstance(env_id, str) or not env_id:
            raise DataError(f"{where} has no env id.")
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise DataError(f"{where} has max_episode_steps {steps!r}, not a positive integer.")
        entry_point = record.get("entry_point")
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in keys):
            raise DataError(f"{where} has malformed kwargs or obs_keys.")
        if entry_point is not None and not isinstance(entry_point, str):
            raise DataError(f"{where} has an entry point that is not a string.")
        return cls(
            id=env_id,
            kwargs_json=json.dumps(dict(kwargs), sort_keys=True),
            max_episode_steps=steps,
            obs_keys=tuple(keys),
            entry_point=entry_point,
        )

    def to_record(self) -> dict[str, Any]:
        """The plain JSON record stored in a manifest."""
        return {
            "kind": RECORD_KIND,
            "id": self.id,
            "entry_point": self.entry_point,
            "kwargs": self.kwargs,
            "max_episode_steps": self.max_episode_steps,
            "obs_keys": list(self.obs_keys),
        }

    def describe(self) -> str:
        """A short human description, for log lines."""
        steps = f", {self.max_episode_steps} steps" if self.max_episode_steps else ""
        return f"gymnasium {self.id}{steps}"


def record_from_env_spec_json(
    spec_json: str | Mapping[str, Any], obs_keys: tuple[str, ...] | list[str]
) -> RecordedEnv:
    """A RecordedEnv from gymnasium's ``EnvSpec.to_json()`` (as Minari stores it).

    Read as plain JSON rather than ``EnvSpec.from_json``: spec fields change between
    gymnasium versions (Minari itself strips some), and only id, entry point, kwargs and
    the time limit matter here.
    """
    raw = json.loads(spec_json) if isinstance(spec_json, str) else dict(spec_json)
    entry_point = raw.get("entry_point")
    return RecordedEnv.from_record(
        {
            "kind": RECORD_KIND,
            "id": raw.get("id"),
            "entry_point": entry_point if isinstance(entry_point, str) else None,
            "kwargs": raw.get("kwargs") or {},
            "max_episode_steps": raw.get("max_episode_steps"),
            "obs_keys": list(obs_keys),
        },
        where=f"env spec {raw.get('id')!r}",
    )


def _import_robotics_if_needed(env_id: str) -> None:
    if env_id not in gym.registry:
        # gymnasium-robotics registers the maze envs (AntMaze_*, PointMaze_*) at import;
        # the quiet wrapper swallows its import-time notice.
        with contextlib.suppress(ImportError):
            import diffcps_ray.envs.robotics  # noqa: F401


def make_recorded_env(
    recorded: RecordedEnv,
    obs_dim: int,
    act_dim: int,
    max_episode_steps: int,
    *,
    goal_task: bool,
) -> gym.Env:
    """The recorded env with our contract (see the module docstring)."""
    _import_robotics_if_needed(recorded.id)
    options: dict[str, Any] = {
        "max_episode_steps": max_episode_steps,
        "disable_env_checker": True,  # its dtype warnings are noise during evaluation
    }
    try:
        with warnings.catch_warnings():
            # The dataset names this version (Minari's AntMaze ports: v4); gymnasium's
            # "out of date" notice is noise that evaluation cannot act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            env = _make(recorded, options)
    except (gym.error.Error, ImportError, TypeError, ValueError) as error:
        raise DataError(
            f"The dataset's evaluation env {recorded.id!r} could not be made ({error})."
        ) from None
    return FlatEvalEnv(env, recorded.obs_keys, obs_dim, act_dim, goal_task=goal_task)


def _make(recorded: RecordedEnv, options: dict[str, Any]) -> gym.Env:
    if recorded.id in gym.registry:
        return gym.make(recorded.id, **options, **recorded.kwargs)
    if recorded.entry_point:
        # Not registered here, but the record says where the class lives.
        spec = gym.envs.registration.EnvSpec(
            id=recorded.id, entry_point=recorded.entry_point, kwargs=recorded.kwargs
        )
        return gym.make(spec, **options)
    raise gym.error.Error(f"{recorded.id} is not registered and the record has no entry point")


class FlatEvalEnv(gym.Wrapper):
    """Flat float32 observations, actions in [-1, 1], episodes ending at a goal's success."""

    def __init__(
        self,
        env: gym.Env,
        obs_keys: tuple[str, ...],
        obs_dim: int,
        act_dim: int,
        *,
        goal_task: bool,
    ) -> None:
        super().__init__(env)
        self._keys = obs_keys
        self._goal_task = goal_task
        inner = env.observation_space
        if isinstance(inner, gym.spaces.Dict):
            if not obs_keys:
                raise DataError(
                    f"The evaluation env {env.spec.id if env.spec else env!s} has dict "
                    f"observations {sorted(inner.spaces)} but the record names no obs_keys."
                )
            missing = [k for k in obs_keys if k not in inner.spaces]
            if missing:
                raise DataError(
                    f"The evaluation env's observations have no key {missing[0]!r} "
                    f"(they have {sorted(inner.spaces)})."
                )
            width = sum(int(np.prod(inner.spaces[k].shape)) for k in obs_keys)
        else:
            width = int(np.prod(inner.shape))
        action_space = env.action_space
        if not isinstance(action_space, gym.spaces.Box) or action_space.shape != (act_dim,):
            raise DataError(
                f"The evaluation env's action space is {action_space}, the data's actions "
                f"have {act_dim} dims."
            )
        if width != obs_dim:
            raise DataError(
                f"The evaluation env's observations flatten to {width} dims, the data's "
                f"have {obs_dim}."
            )
        self._low = action_space.low.astype(np.float64)
        self._high = action_space.high.astype(np.float64)
        # Rescale only where the env's bounds are not already [-1, 1] (AntMaze's are).
        self._rescale = not (np.all(self._low == -1.0) and np.all(self._high == 1.0))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    def _flat(self, obs: Any) -> np.ndarray:
        if self._keys and isinstance(obs, Mapping):
            return np.concatenate(
                [np.asarray(obs[k], dtype=np.float32).reshape(-1) for k in self._keys]
            )
        return np.asarray(obs, dtype=np.float32).reshape(-1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._flat(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if self._rescale:
            action = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        obs, reward, terminated, truncated, info = self.env.step(
            action.astype(self.env.action_space.dtype)
        )
        if self._goal_task:
            if "success" not in info:
                raise DataError(
                    "The evaluation env reports no info['success'], which a goal task's "
                    "score needs."
                )
            # The score only asks whether the goal was reached: stop at the first success.
            terminated = bool(terminated) or bool(info["success"])
        return self._flat(obs), float(reward), bool(terminated), bool(truncated), info
