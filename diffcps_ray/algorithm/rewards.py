"""Reward tuning applied to a dataset before training (not per step)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from torch import Tensor

from diffcps_ray.errors import ConfigError

REWARD_TUNES = ("none", "cql_antmaze")

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def tune_rewards(rewards: ArrayT, mode: str) -> ArrayT:
    """Return tuned rewards (a new array/tensor; the input is not modified).

    - ``"none"``: unchanged (a copy).
    - ``"cql_antmaze"``: ``r' = (r - 0.5) * 4``, the CQL AntMaze tuning the authors use
      (sparse 0/1 rewards become -2/+2).
    """
    if mode == "none":
        return rewards.copy() if isinstance(rewards, np.ndarray) else rewards.clone()
    if mode == "cql_antmaze":
        return (rewards - 0.5) * 4.0
    raise ConfigError(f"reward_tune must be one of {REWARD_TUNES}, got {mode!r}.")
