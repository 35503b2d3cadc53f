"""AntMaze evaluation env matching D4RL's (d4rl.locomotion AntMazeEnv, eval=True, v2 resets).

Built from installed assets: gymnasium's ant.xml (the model gymnasium-robotics' AntMaze
uses) and gymnasium-robotics' maze layouts, changed to D4RL's ant and D4RL's frame:

- physics: timestep 0.02 with 5 frames per step (dt 0.1), motors with ctrlrange +-30 and
  gear 1 (gymnasium: 0.01 s, ctrlrange +-1, gear 150), D4RL's contact softness (default
  geom solref .02 1, solimp .8 .8 .01); actions in [-1, 1] are scaled by 30 as D4RL's
  NormalizedBoxEnv does. Otherwise the two ant.xml files compile to the same model.
- frame: cell (i, j) centre at (4 j - 4, 4 i - 4), i.e. the start cell (1, 1) at the origin;
  gymnasium-robotics centres the map and flips y (y = -i), which is why its maps read
  reversed row-wise and sit at offsets (4, 4), (10, 10), (18, 12) from D4RL's.
- start: D4RL's init qpos + U(-0.1, 0.1) on every coordinate (so x, y = U(-0.1, 0.1)),
  velocities N(0, 0.1).
- goal: D4RL's single evaluation goal cell (umaze (3, 1) -> (0, 8), medium (6, 6) ->
  (20, 20), large (7, 9) -> (32, 24)) plus U(0, 1) plus U(0, 0.5) per coordinate, floored
  at 0. D4RL's v2 envs draw a new goal at every reset; so do we, for the v0 names too
  (v0 fixed one goal per process, which made its evaluations high-variance).
- reward 1 within 0.5 of the goal, else 0; the episode ends there (GoalReachingEnv with
  eval=True sets done on success), so returns are 0 or 1; time limit 700 (umaze) or 1000.
- observation: qpos[:15] + qvel[:14] (29 dims, x, y first, no goal).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from diffcps_ray.envs.robotics import maps
from diffcps_ray.errors import UnknownTaskError

MAZE_SIZE_SCALING = 4.0
MAZE_HEIGHT = 0.5
FRAME_SKIP = 5
TIMESTEP = 0.02
ACTION_SCALE = 30.0
GOAL_RADIUS = 0.5
START_CELL = (1, 1)  # D4RL's 'r' cell: the origin of its frame
# D4RL's *_TEST maps put the single evaluation goal here (row, col).
GOAL_CELLS = {"umaze": (3, 1), "medium": (6, 6), "large": (7, 9)}
# gymnasium-robotics' layouts are the same arrays as D4RL's U_MAZE, BIG_MAZE, HARDEST_MAZE
# (without the 'r'/'g' marks); only the coordinate convention differs.
MAZE_MAPS: dict[str, list[list[int | str]]] = {
    "umaze": maps.U_MAZE,
    "medium": maps.MEDIUM_MAZE,
    "large": maps.LARGE_MAZE,
}
OBS_DIM = 29
ACT_DIM = 8


def _gymnasium_ant_xml() -> str:
    return os.path.join(os.path.dirname(gym.__file__), "envs", "mujoco", "assets", "ant.xml")


def cell_to_xy(cell: tuple[int, int]) -> np.ndarray:
    """D4RL's _rowcol_to_xy: x from the column, y from the row, start cell at the origin."""
    i, j = cell
    return np.array(
        [
            j * MAZE_SIZE_SCALING - START_CELL[1] * MAZE_SIZE_SCALING,
            i * MAZE_SIZE_SCALING - START_CELL[0] * MAZE_SIZE_SCALING,
        ]
    )


def xy_to_cell(xy: np.ndarray) -> tuple[int, int]:
    """The maze cell containing position xy (D4RL's frame)."""
    j = int(np.floor(xy[0] / MAZE_SIZE_SCALING + START_CELL[1] + 0.5))
    i = int(np.floor(xy[1] / MAZE_SIZE_SCALING + START_CELL[0] + 0.5))
    return i, j


def build_model_xml(maze: str) -> str:
    """gymnasium's ant.xml turned into D4RL's ant, with the maze's blocks in D4RL's frame."""
    tree = ET.parse(_gymnasium_ant_xml())
    root = tree.getroot()
    option = root.find("option")
    assert option is not None
    option.set("timestep", str(TIMESTEP))
    # D4RL's ant.xml gives every geom (maze blocks included) softer contacts than
    # gymnasium's, which leaves MuJoCo's defaults (solimp 0.9 0.95 0.001).
    default_geom = root.find("default/geom")
    assert default_geom is not None
    default_geom.set("solref", ".02 1")
    default_geom.set("solimp", ".8 .8 .01")
    for motor in root.iter("motor"):
        motor.set("ctrlrange", f"{-ACTION_SCALE} {ACTION_SCALE}")
        motor.set("gear", "1")
    worldbody = root.find("worldbody")
    assert worldbody is not None
    half = 0.5 * MAZE_SIZE_SCALING
    half_height = MAZE_HEIGHT / 2 * MAZE_SIZE_SCALING
    for i, row in enumerate(MAZE_MAPS[maze]):
        for j, cell in enumerate(row):
            if cell != 1:
                continue
            x, y = cell_to_xy((i, j))
            ET.SubElement(
                worldbody,
                "geom",
                name=f"block_{i}_{j}",
                pos=f"{x} {y} {half_height}",
                size=f"{half} {half} {half_height}",
                type="box",
                contype="1",
                conaffinity="1",
                rgba="0.7 0.5 0.3 1.0",
            )
    return ET.tostring(root, encoding="unicode")


class D4RLAntMazeEnv(gym.Env):
    """D4RL's AntMaze evaluation env on current MuJoCo (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, maze: str = "umaze", max_episode_steps: int = 700) -> None:
        if maze not in MAZE_MAPS:
            raise UnknownTaskError(
                f"Unknown AntMaze maze {maze!r}: expected one of {', '.join(MAZE_MAPS)}."
            )
        self.maze_name = maze
        self.maze_map = MAZE_MAPS[maze]
        self.max_episode_steps = max_episode_steps
        self.model = mujoco.MjModel.from_xml_string(build_model_xml(maze))
        self.data = mujoco.MjData(self.model)
        self.init_qpos = self.model.qpos0.copy()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self.goal_cell = GOAL_CELLS[maze]
        self.goal = cell_to_xy(self.goal_cell)
        self._elapsed = 0

    @property
    def dt(self) -> float:
        return self.model.opt.timestep * FRAME_SKIP

    def sample_goal(self) -> np.ndarray:
        """D4RL's goal_sampler: goal cell + U(0, 0.25 s) + U(0, 0.5) * 0.25 s, floored at 0."""
        rng = self.np_random
        scale = MAZE_SIZE_SCALING
        xy = cell_to_xy(self.goal_cell)
        xy = xy + rng.uniform(0.0, 0.25 * scale, 2) + rng.uniform(0.0, 0.5, 2) * 0.25 * scale
        return np.maximum(xy, 0.0)

    def xy(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos[:15], self.data.qvel[:14]]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Options: ``start_cell`` (row, col) to start elsewhere than D4RL's origin (data
        generation only), ``goal`` (x, y) to fix the goal."""
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        self.goal = (
            np.asarray(options["goal"], dtype=np.float64)
            if options.get("goal") is not None
            else self.sample_goal()
        )
        mujoco.mj_resetData(self.model, self.data)
        qpos = self.init_qpos + rng.uniform(-0.1, 0.1, self.model.nq)
        qvel = rng.standard_normal(self.model.nv) * 0.1
        if options.get("start_cell") is not None:
            qpos[:2] += cell_to_xy(tuple(options["start_cell"]))
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)
        self._elapsed = 0
        return self._obs(), {"goal": self.goal.copy(), "success": self._success()}

    def _success(self) -> bool:
        return bool(np.linalg.norm(self.data.qpos[:2] - self.goal) <= GOAL_RADIUS)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # NormalizedBoxEnv: [-1, 1] -> [-30, 30], clipped.
        self.data.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) * (
            ACTION_SCALE
        )
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        self._elapsed += 1
        success = self._success()
        # D4RL's eval env ends the episode on success; the ant's own height check is unused.
        truncated = not success and self._elapsed >= self.max_episode_steps
        info = {"goal": self.goal.copy(), "success": success}
        return self._obs(), float(success), success, truncated, info


def make_antmaze_env(maze: str, max_episode_steps: int) -> gym.Env:
    """The evaluation env for antmaze-<maze>-*."""
    return D4RLAntMazeEnv(maze, max_episode_steps)


def free_cells(maze: str) -> list[tuple[int, int]]:
    """The maze's open cells (row, col)."""
    return [
        (i, j) for i, row in enumerate(MAZE_MAPS[maze]) for j, cell in enumerate(row) if cell != 1
    ]
