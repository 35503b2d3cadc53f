"""Locomotion evaluation envs: gymnasium v5 MuJoCo envs standing in for D4RL's v2 (gym v3)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class Float32Observation(gym.ObservationWrapper):
    """Cast observations to float32 (MuJoCo envs return float64)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            low=space.low.astype(np.float32),
            high=space.high.astype(np.float32),
            shape=space.shape,
            dtype=np.float32,
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32)


def make_locomotion_env(env_id: str, max_episode_steps: int = 1000) -> gym.Env:
    """A v5 env with D4RL's episode length; Walker2d gets D4RL's foot friction back."""
    kwargs: dict[str, object] = {}
    if env_id.startswith("Walker2d"):
        # v5's model gives both feet friction 1.9; D4RL's data were collected with the
        # right foot at 0.9, which the shipped walker2d.xml keeps (docs/data-formats.md).
        kwargs["xml_file"] = "walker2d.xml"
    env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    return Float32Observation(env)
