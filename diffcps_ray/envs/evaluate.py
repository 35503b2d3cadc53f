"""Batched policy evaluation: episodes spread over several envs, one policy call per step.

Episode k is always reset with the k-th seed drawn from ``seed``, so the episodes (and,
for a deterministic per-row policy, the results) do not depend on ``num_envs``. Envs are
cached per task and reused across calls (every episode reseeds its env, so reuse does
not change results) because building a MuJoCo maze model costs tens of milliseconds.

A task whose data recorded its own evaluation env (``TaskSpec.with_eval_env``) runs
through this same loop in that env; its score is the success rate x 100.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from diffcps_ray.envs.tasks import TaskSpec, get_task
from diffcps_ray.errors import ConfigError

ActFn = Callable[[np.ndarray], Any]  # (B, obs_dim) float32 -> (B, act_dim) array-like
ProgressFn = Callable[[int, int], None]  # (episodes finished, episodes in all)


class EpisodeObserver(Protocol):
    """Sees every reset and step of an evaluation (paths for figures, frames for videos)."""

    def reset(self, episode: int, env: Any, obs: np.ndarray, info: dict[str, Any]) -> None: ...

    def step(self, episode: int, env: Any, obs: np.ndarray, reward: float, done: bool,
             info: dict[str, Any]) -> None: ...


DEFAULT_NUM_ENVS = 10

# Keyed by task, recorded env and time limit: one task may be evaluated in several envs.
_ENV_CACHE: dict[tuple[str, Any, int], list[Any]] = {}


def _envs_for(spec: TaskSpec, count: int) -> list[Any]:
    envs = _ENV_CACHE.setdefault((spec.name, spec.eval_env, spec.max_episode_steps), [])
    while len(envs) < count:
        envs.append(spec.make_env())
    return envs[:count]


def clear_env_cache() -> None:
    """Close and forget the cached evaluation envs."""
    for envs in _ENV_CACHE.values():
        for env in envs:
            env.close()
    _ENV_CACHE.clear()


def episode_seeds(seed: int, num_episodes: int) -> list[int]:
    """The reset seed of each episode: independent streams drawn from ``seed``."""
    state = np.random.SeedSequence(seed).generate_state(num_episodes, dtype=np.uint32)
    return [int(s) for s in state]


def evaluate_policy(
    task: str | TaskSpec,
    act_fn: ActFn,
    num_episodes: int,
    seed: int,
    num_envs: int | None = None,
    *,
    progress: ProgressFn | None = None,
    observer: EpisodeObserver | None = None,
) -> dict[str, float]:
    """Run exactly ``num_episodes`` episodes of ``task`` with ``act_fn``; summary statistics.

    Returns normalized_score (of the mean return), normalized_score_std (the sample spread across
    episodes, NaN for one episode),
    episode_return_mean/std, episode_length_mean, num_episodes and, for goal tasks,
    success_rate (the share of episodes that reached the goal at least once). In a
    recorded goal env (``spec.scores_success``) the normalised scores are 100 x success.

    ``progress(finished, total)`` is called whenever an episode ends; ``observer`` sees
    every reset and step (episode index, env, observation, reward, info).
    """
    spec = get_task(task) if isinstance(task, str) else task
    if num_episodes < 1:
        raise ConfigError(f"num_episodes must be at least 1, got {num_episodes}.")
    if num_envs is not None and num_envs < 1:
        raise ConfigError(f"num_envs must be at least 1, got {num_envs}.")
    num_envs = min(num_episodes, num_envs or DEFAULT_NUM_ENVS)
    envs = _envs_for(spec, num_envs)
    seeds = episode_seeds(seed, num_episodes)
    low, high = envs[0].action_space.low, envs[0].action_space.high

    returns = np.zeros(num_episodes, dtype=np.float64)
    lengths = np.zeros(num_episodes, dtype=np.int64)
    successes = np.zeros(num_episodes, dtype=bool)
    obs = np.zeros((num_envs, spec.obs_dim), dtype=np.float32)
    episode_of = np.full(num_envs, -1, dtype=np.int64)  # -1: idle, no episode left
    next_episode = 0
    finished = 0

    def start(slot: int) -> None:
        nonlocal next_episode
        if next_episode >= num_episodes:
            episode_of[slot] = -1
            return
        episode_of[slot] = next_episode
        obs[slot], info = envs[slot].reset(seed=seeds[next_episode])
        if observer is not None:
            observer.reset(next_episode, envs[slot], obs[slot].copy(), info)
        next_episode += 1

    for slot in range(num_envs):
        start(slot)
    while True:
        active = np.flatnonzero(episode_of >= 0)
        if active.size == 0:
            break
        actions = np.asarray(act_fn(obs[active]), dtype=np.float32)
        if actions.shape != (active.size, spec.act_dim):
            raise ConfigError(
                f"The policy returned actions of shape {actions.shape} for {active.size} "
                f"observations; task {spec.name!r} needs ({active.size}, {spec.act_dim})."
            )
        actions = np.clip(actions, low, high)
        for row, slot in enumerate(active):
            k = episode_of[slot]
            next_obs, reward, terminated, truncated, info = envs[slot].step(actions[row])
            returns[k] += reward
            lengths[k] += 1
            successes[k] |= bool(info.get("success", False))
            done = bool(terminated or truncated)
            if observer is not None:
                observer.step(int(k), envs[slot], next_obs, float(reward), done, info)
            if done:
                finished += 1
                if progress is not None:
                    progress(finished, num_episodes)
                start(slot)
            else:
                obs[slot] = next_obs

    if spec.scores_success:
        normalized = 100.0 * successes.astype(np.float64)
        score = float(normalized.mean())
    else:
        normalized = np.array([spec.normalized_score(r) for r in returns])
        score = float(spec.normalized_score(returns.mean()))
    # Sample spreads (ddof 1): they estimate the episode-to-episode noise, which the
    # sweep's selection turns into standard errors; one episode cannot estimate it (NaN).
    undefined = num_episodes < 2
    result = {
        "normalized_score": score,
        "normalized_score_std": math.nan if undefined else float(normalized.std(ddof=1)),
        "episode_return_mean": float(returns.mean()),
        "episode_return_std": math.nan if undefined else float(returns.std(ddof=1)),
        "episode_length_mean": float(lengths.mean()),
        "num_episodes": num_episodes,
    }
    if spec.is_goal_task:
        result["success_rate"] = float(successes.mean())
    return result
