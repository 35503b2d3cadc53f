"""PointMaze: gymnasium-robotics' PointMaze_*-v3 with a flat observation, plus a scripted expert.

Evaluation protocol (docs/pointmaze.md): random start and goal cells (gymnasium-robotics'
own sampling, +-0.25 position noise), sparse reward 1 on every step within 0.45 of the
goal, no termination on success (the return counts the steps spent at the goal),
300/600/800-step episodes for UMaze/Medium/Large.

Observation: (x, y, vx, vy, goal_x, goal_y) as float32.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from diffcps_ray.envs.robotics import PointMazeEnv, maps

MAZE_MAPS: dict[str, list[list[int | str]]] = {
    "umaze": maps.U_MAZE,
    "medium": maps.MEDIUM_MAZE,
    "large": maps.LARGE_MAZE,
}
GOAL_RADIUS = 0.45  # gymnasium-robotics' sparse reward radius
OBS_DIM = 6
ACT_DIM = 2


def _maze_map(maze: str) -> list[list[int | str]]:
    try:
        return MAZE_MAPS[maze]
    except KeyError:
        from diffcps_ray.errors import UnknownTaskError

        raise UnknownTaskError(
            f"Unknown PointMaze maze {maze!r}: expected one of {', '.join(MAZE_MAPS)}."
        ) from None


class PointMazeFlatEnv(gym.Env):
    """PointMazeEnv (continuing, fixed goal) with flat float32 observations and a time limit.

    Built on the env class directly rather than gym.make: the checker and order-enforcing
    wrappers cost a noticeable share of a 30 us step.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, maze: str = "umaze", max_episode_steps: int = 300) -> None:
        self.maze_name = maze
        self.max_episode_steps = max_episode_steps
        # continuing_task=True: success does not end the episode; reset_target=False: the
        # goal stays put, so the return counts the steps spent at the goal.
        self.inner = PointMazeEnv(
            maze_map=_maze_map(maze),
            reward_type="sparse",
            continuing_task=True,
            reset_target=False,
        )
        # gymnasium-robotics leaves the maze's model file in the temp directory; it is
        # compiled by now, so remove it rather than leak one file per env.
        with contextlib.suppress(OSError):
            os.remove(self.inner.tmp_xml_file_path)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self._elapsed = 0

    @property
    def maze(self):  # gymnasium_robotics.envs.maze.maze_v4.Maze
        return self.inner.maze

    @property
    def goal(self) -> np.ndarray:
        return self.inner.goal

    def set_goal(self, goal_xy: np.ndarray) -> None:
        """Move the goal (used by the data generator's continuing task)."""
        self.inner.goal = np.asarray(goal_xy, dtype=np.float64).copy()
        self.inner.update_target_site_pos()

    def _flat(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([obs["observation"], obs["desired_goal"]]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self.inner.reset(seed=seed, options=options)
        self._elapsed = 0
        return self._flat(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, _, info = self.inner.step(np.asarray(action, dtype=np.float64))
        self._elapsed += 1
        truncated = self._elapsed >= self.max_episode_steps
        return self._flat(obs), float(reward), bool(terminated), truncated, info

    def close(self) -> None:
        self.inner.close()


def make_pointmaze_env(maze: str, max_episode_steps: int) -> gym.Env:
    """The evaluation env for pointmaze-<maze>."""
    return PointMazeFlatEnv(maze, max_episode_steps)


class PointMazeExpert:
    """Scripted expert: breadth-first path over maze cells, PD control to the next cell centre.

    Works from the flat observation alone (position, velocity, goal), batched, so it can be
    the act_fn of evaluate_policy. In the goal's cell it steers to the goal itself.
    """

    def __init__(self, maze: str, kp: float = 10.0, kd: float = 1.0) -> None:
        self.maze_map = _maze_map(maze)
        self.kp = kp
        self.kd = kd
        self.rows = len(self.maze_map)
        self.cols = len(self.maze_map[0])
        # gymnasium-robotics' frame: cell (i, j) centre at x = j + 0.5 - cols/2,
        # y = rows/2 - (i + 0.5) (maze_size_scaling 1).
        self.x_center = self.cols / 2
        self.y_center = self.rows / 2
        self.free = np.array([[cell != 1 for cell in row] for row in self.maze_map], dtype=bool)
        self.free_cells = np.argwhere(self.free)
        self.next_cell = self._next_cell_table()

    def _next_cell_table(self) -> np.ndarray:
        """next_cell[gi, gj, ci, cj] = the cell after (ci, cj) on a shortest path to (gi, gj)."""
        table = np.zeros((self.rows, self.cols, self.rows, self.cols, 2), dtype=np.int64)
        for gi, gj in self.free_cells:
            # BFS from the goal; each cell's parent is its next step towards the goal.
            table[gi, gj, gi, gj] = (gi, gj)
            seen = {(gi, gj)}
            queue = deque([(gi, gj)])
            while queue:
                i, j = queue.popleft()
                for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    ni, nj = i + di, j + dj
                    if self.free[ni, nj] and (ni, nj) not in seen:
                        seen.add((ni, nj))
                        table[gi, gj, ni, nj] = (i, j)
                        queue.append((ni, nj))
        return table

    def xy_to_cell(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) positions -> (..., 2) int cell indices (row, col), clipped into the map."""
        i = np.floor(self.y_center - xy[..., 1]).astype(np.int64)
        j = np.floor(xy[..., 0] + self.x_center).astype(np.int64)
        return np.stack([np.clip(i, 0, self.rows - 1), np.clip(j, 0, self.cols - 1)], axis=-1)

    def cell_to_xy(self, cell: np.ndarray) -> np.ndarray:
        cell = np.asarray(cell)
        x = cell[..., 1] + 0.5 - self.x_center
        y = self.y_center - (cell[..., 0] + 0.5)
        return np.stack([x, y], axis=-1).astype(np.float64)

    def waypoint(self, pos: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Where to steer: the next cell centre on the path, or the target in its own cell."""
        here = self.xy_to_cell(pos)
        there = self.xy_to_cell(target)
        nxt = self.next_cell[there[..., 0], there[..., 1], here[..., 0], here[..., 1]]
        same = np.all(here == there, axis=-1, keepdims=True)
        return np.where(same, target, self.cell_to_xy(nxt))

    def act_towards(self, pos: np.ndarray, vel: np.ndarray, target: np.ndarray) -> np.ndarray:
        """PD action (clipped to [-1, 1]) steering from pos towards target along the maze."""
        err = self.waypoint(pos, target) - pos
        return np.clip(self.kp * err - self.kd * vel, -1.0, 1.0)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Batched act_fn: obs (B, 6) or (6,) -> actions (B, 2) or (2,), float32."""
        obs = np.asarray(obs, dtype=np.float64)
        action = self.act_towards(obs[..., 0:2], obs[..., 2:4], obs[..., 4:6])
        return action.astype(np.float32)
