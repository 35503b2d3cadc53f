"""Maze rollouts: the x-y path of every evaluation episode and the maze's walls, for figures.

Both maze families put the agent's x, y first in the observation (PointMaze: x, y, vx, vy,
goal; AntMaze: qpos[:2] first; Minari's AntMaze: achieved_goal first). Walls come from the
env's own layout: gymnasium-robotics' ``Maze`` (PointMaze, Minari's envs) or our D4RL
AntMaze's map (cells of 4 x 4 around D4RL's origin).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from diffcps_ray.envs.tasks import TaskSpec
    from diffcps_ray.policy.core import Policy


@dataclass
class Episode:
    xy: list[np.ndarray] = field(default_factory=list)
    goal: np.ndarray | None = None
    success: bool = False
    episode_return: float = 0.0


@dataclass
class Rollouts:
    """Paths of a policy's evaluation episodes in one maze, and the maze's walls."""

    task: str
    episodes: list[Episode]
    walls: list[tuple[float, float, float]]  # (centre x, centre y, half side) per wall cell
    result: dict[str, Any]  # evaluate_policy's summary

    @property
    def num_successes(self) -> int:
        return sum(e.success for e in self.episodes)


# Where each wrapper keeps what it wraps: ours, gymnasium's and gymnasium-robotics'.
WRAPPED_ATTRIBUTES = ("inner", "env", "unwrapped", "point_env", "ant_env")


def wrapped_layers(env: Any) -> Iterator[Any]:
    """``env`` and every object it wraps, outermost first, each once."""
    seen: set[int] = set()
    queue = [env]
    while queue:
        obj = queue.pop(0)
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        queue.extend(getattr(obj, name, None) for name in WRAPPED_ATTRIBUTES)


def _find(env: Any, attribute: str) -> Any:
    """``attribute`` of the env or of an env it wraps."""
    for obj in wrapped_layers(env):
        try:
            value = getattr(obj, attribute, None)
        except Exception:  # gymnasium wrappers may refuse private-looking lookups
            value = None
        if value is not None:
            return value
    return None


def maze_walls(env: Any) -> list[tuple[float, float, float]]:
    """Wall cells as (x, y, half side) in the env's own x-y frame."""
    maze = _find(env, "maze")
    if maze is not None and hasattr(maze, "cell_rowcol_to_xy"):  # gymnasium-robotics
        half = float(maze.maze_size_scaling) / 2
        return [
            (*(float(v) for v in maze.cell_rowcol_to_xy(np.array([i, j]))), half)
            for i, row in enumerate(maze.maze_map)
            for j, cell in enumerate(row)
            if cell == 1
        ]
    maze_map = _find(env, "maze_map")
    if maze_map is not None:  # our D4RL AntMaze
        from diffcps_ray.envs.antmaze import MAZE_SIZE_SCALING, cell_to_xy

        return [
            (*(float(v) for v in cell_to_xy((i, j))), MAZE_SIZE_SCALING / 2)
            for i, row in enumerate(maze_map)
            for j, cell in enumerate(row)
            if cell == 1
        ]
    return []


class PathRecorder:
    """An ``evaluate_policy`` observer keeping every episode's x-y path, goal and success."""

    def __init__(self) -> None:
        self.episodes: dict[int, Episode] = {}
        self.walls: list[tuple[float, float, float]] | None = None

    def reset(self, episode: int, env: Any, obs: np.ndarray, info: dict[str, Any]) -> None:
        if self.walls is None:
            self.walls = maze_walls(env)
        goal = info.get("goal")
        if goal is None:
            goal = _find(env, "goal")
        record = Episode(goal=None if goal is None else np.asarray(goal, float)[:2].copy())
        record.xy.append(np.asarray(obs[:2], float).copy())
        self.episodes[episode] = record

    def step(self, episode: int, env: Any, obs: np.ndarray, reward: float, done: bool,
             info: dict[str, Any]) -> None:
        record = self.episodes[episode]
        record.xy.append(np.asarray(obs[:2], float).copy())
        record.success |= bool(info.get("success", False))
        record.episode_return += reward


def collect_rollouts(policy: Policy, episodes: int, seed: int,
                     spec: TaskSpec | None = None) -> Rollouts:
    """Run ``episodes`` evaluation episodes of a maze policy, keeping their paths."""
    from diffcps_ray.envs.evaluate import evaluate_policy

    spec = spec or policy.task_spec()
    recorder = PathRecorder()
    policy.seed(seed)
    result = evaluate_policy(spec, policy.act, episodes, seed, observer=recorder)
    ordered = [recorder.episodes[k] for k in sorted(recorder.episodes)]
    return Rollouts(task=policy.task, episodes=ordered, walls=recorder.walls or [],
                    result=result)
