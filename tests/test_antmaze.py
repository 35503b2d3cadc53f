"""AntMaze evaluation env against D4RL's facts: frame, start, goal, physics, episode end."""

from __future__ import annotations

import numpy as np
import pytest

from diffcps_ray.envs import antmaze
from diffcps_ray.envs.antmaze import D4RLAntMazeEnv, cell_to_xy, xy_to_cell
from diffcps_ray.envs.tasks import get_task

# D4RL's evaluation targets (goal cell in its frame; goal = cell + U(0,1) + U(0,0.5)).
D4RL_GOAL_CELL_XY = {"umaze": (0.0, 8.0), "medium": (20.0, 20.0), "large": (32.0, 24.0)}


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_goal_positions_match_d4rl(maze: str) -> None:
    env = D4RLAntMazeEnv(maze)
    np.testing.assert_allclose(cell_to_xy(antmaze.GOAL_CELLS[maze]), D4RL_GOAL_CELL_XY[maze])
    goals = np.array([env.reset(seed=s)[1]["goal"] for s in range(300)])
    offset = goals - np.array(D4RL_GOAL_CELL_XY[maze])
    assert offset.min() >= 0.0 and offset.max() <= 1.5
    # U(0, 1) + U(0, 0.5): mean 0.75, and both parts show (some offsets above 1).
    np.testing.assert_allclose(offset.mean(axis=0), 0.75, atol=0.06)
    assert (offset > 1.0).any()


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_start_matches_d4rl(maze: str) -> None:
    env = D4RLAntMazeEnv(maze)
    starts = np.array([env.reset(seed=s)[0] for s in range(100)])
    assert np.abs(starts[:, :2]).max() <= 0.1 + 1e-6
    assert np.abs(starts[:, :2]).max() > 0.05  # U(-0.1, 0.1), not a fixed point
    np.testing.assert_allclose(starts[:, 2], 0.75, atol=0.1 + 1e-6)  # torso height
    assert starts.shape[1] == 29


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_walls_in_d4rl_frame(maze: str) -> None:
    env = D4RLAntMazeEnv(maze)
    layout = antmaze.MAZE_MAPS[maze]
    for i, row in enumerate(layout):
        for j, cell in enumerate(row):
            name = f"block_{i}_{j}"
            if cell == 1:
                pos = env.model.geom(name).pos
                np.testing.assert_allclose(pos[:2], cell_to_xy((i, j)))
                np.testing.assert_allclose(env.model.geom(name).size, [2.0, 2.0, 1.0])
            else:
                assert xy_to_cell(cell_to_xy((i, j))) == (i, j)
    # The start and goal cells are open; D4RL's U-maze wall is between them, at y = 4.
    assert layout[1][1] == 0
    gi, gj = antmaze.GOAL_CELLS[maze]
    assert layout[gi][gj] == 0
    if maze == "umaze":
        np.testing.assert_allclose(env.model.geom("block_2_1").pos[:2], [0.0, 4.0])
        np.testing.assert_allclose(env.model.geom("block_2_2").pos[:2], [4.0, 4.0])


def test_d4rl_ant_physics() -> None:
    env = D4RLAntMazeEnv("umaze")
    assert env.model.opt.timestep == pytest.approx(0.02)
    assert env.dt == pytest.approx(0.1)
    np.testing.assert_allclose(env.model.actuator_gear[:, 0], 1.0)
    np.testing.assert_allclose(env.model.actuator_ctrlrange, [[-30.0, 30.0]] * 8)
    # D4RL's default geom contact parameters, on the ant and on the walls.
    np.testing.assert_allclose(env.model.geom_solimp[:, :3], [[0.8, 0.8, 0.01]] * env.model.ngeom)
    np.testing.assert_allclose(env.model.geom_solref, [[0.02, 1.0]] * env.model.ngeom)
    env.reset(seed=0)
    env.step(np.full(8, 0.5))
    np.testing.assert_allclose(env.data.ctrl, 15.0)  # actions scaled by 30
    env.step(np.full(8, 3.0))
    np.testing.assert_allclose(env.data.ctrl, 30.0)  # clipped first


def test_success_ends_the_episode_with_reward_one() -> None:
    env = D4RLAntMazeEnv("umaze")
    env.reset(seed=0, options={"goal": (0.0, 8.0)})
    _, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert (reward, terminated, truncated, info["success"]) == (0.0, False, False, False)
    env.reset(seed=0, options={"goal": (0.0, 0.0)})
    _, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)


def test_time_limit() -> None:
    env = get_task("antmaze-umaze-v2").make_env(seed=0)
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(np.zeros(8))
        steps += 1
        done = terminated or truncated
        assert reward == 0.0
    assert steps == 700 and truncated and not terminated


def test_walls_collide_with_the_ant() -> None:
    import mujoco

    env = D4RLAntMazeEnv("umaze")
    env.reset(seed=0)
    env.data.qpos[:2] = (0.0, 1.9)  # torso 0.1 from the wall face at y = 2
    mujoco.mj_forward(env.model, env.data)
    wall = env.model.geom("block_2_1").id
    touching = {
        int(c.geom2) if int(c.geom1) == wall else int(c.geom1)
        for c in env.data.contact[: env.data.ncon]
        if wall in (int(c.geom1), int(c.geom2))
    }
    assert touching, "the ant passes through D4RL's U-maze wall"
