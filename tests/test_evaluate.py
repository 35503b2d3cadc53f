"""evaluate_policy: exact episode count, batching, determinism, summary keys."""

from __future__ import annotations

import numpy as np
import pytest

from diffcps_ray.envs.evaluate import episode_seeds, evaluate_policy
from diffcps_ray.envs.pointmaze import PointMazeExpert
from diffcps_ray.envs.tasks import get_task
from diffcps_ray.errors import ConfigError


class CountingPolicy:
    """Records batch sizes; random actions from its own seeded generator."""

    def __init__(self, act_dim: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.act_dim = act_dim
        self.batch_sizes: list[int] = []

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        assert obs.dtype == np.float32 and obs.ndim == 2
        self.batch_sizes.append(len(obs))
        return self.rng.uniform(-1, 1, (len(obs), self.act_dim))


def test_exact_episode_count_and_batching() -> None:
    policy = CountingPolicy(2)
    result = evaluate_policy("pointmaze-umaze", policy, num_episodes=7, seed=0, num_envs=3)
    assert result["num_episodes"] == 7
    assert result["episode_length_mean"] == 300.0
    # 7 fixed-length episodes on 3 envs: 3 rounds, batches 3, 3, then 1.
    assert sum(policy.batch_sizes) == 7 * 300
    assert max(policy.batch_sizes) == 3 and len(policy.batch_sizes) == 900
    assert set(result) == {
        "normalized_score",
        "normalized_score_std",
        "episode_return_mean",
        "episode_return_std",
        "episode_length_mean",
        "num_episodes",
        "success_rate",
    }


def test_deterministic_per_seed_and_independent_of_num_envs() -> None:
    expert = PointMazeExpert("umaze")
    a = evaluate_policy("pointmaze-umaze", expert, num_episodes=6, seed=11, num_envs=2)
    b = evaluate_policy("pointmaze-umaze", expert, num_episodes=6, seed=11, num_envs=5)
    c = evaluate_policy("pointmaze-umaze", expert, num_episodes=6, seed=12, num_envs=2)
    assert a == b
    assert a["episode_return_mean"] != c["episode_return_mean"]
    assert a["success_rate"] == 1.0
    spec = get_task("pointmaze-umaze")
    assert a["normalized_score"] == pytest.approx(spec.normalized_score(a["episode_return_mean"]))
    r1 = evaluate_policy("pointmaze-umaze", CountingPolicy(2, 5), num_episodes=4, seed=1)
    r2 = evaluate_policy("pointmaze-umaze", CountingPolicy(2, 5), num_episodes=4, seed=1)
    assert r1 == r2


def test_variable_length_episodes() -> None:
    # Hopper falls at different times; every episode is still counted exactly once.
    result = evaluate_policy(
        "hopper-medium-v2", CountingPolicy(3), num_episodes=5, seed=0, num_envs=2
    )
    assert result["num_episodes"] == 5
    assert "success_rate" not in result
    assert 1 <= result["episode_length_mean"] < 1000


def test_antmaze_scores_success() -> None:
    result = evaluate_policy(
        "antmaze-umaze-v2", lambda obs: np.zeros((len(obs), 8)), num_episodes=2, seed=0
    )
    assert result["success_rate"] == 0.0 and result["normalized_score"] == 0.0
    assert result["episode_length_mean"] == 700.0


def test_episode_seeds_and_bad_arguments() -> None:
    assert episode_seeds(0, 3) == episode_seeds(0, 5)[:3]
    assert len(set(episode_seeds(0, 100))) == 100
    with pytest.raises(ConfigError):
        evaluate_policy("pointmaze-umaze", PointMazeExpert("umaze"), 0, seed=0)
    with pytest.raises(ConfigError):
        evaluate_policy("pointmaze-umaze", PointMazeExpert("umaze"), 1, seed=0, num_envs=0)
    with pytest.raises(ConfigError, match=r"needs \(2, 2\)"):
        evaluate_policy("pointmaze-umaze", lambda obs: np.zeros((len(obs), 3)), 2, seed=0)
