"""PointMaze evaluation env and the scripted expert."""

from __future__ import annotations

import numpy as np
import pytest

from diffcps_ray.envs.pointmaze import MAZE_MAPS, PointMazeExpert, PointMazeFlatEnv
from diffcps_ray.envs.tasks import get_task


@pytest.mark.parametrize("name", ["pointmaze-umaze", "pointmaze-medium", "pointmaze-large"])
def test_expert_reaches_random_goals(name: str) -> None:
    spec = get_task(name)
    env = spec.make_env()
    expert = PointMazeExpert(spec.env_name)
    for episode in range(3):
        obs, _ = env.reset(seed=100 + episode)
        reached_at = None
        for t in range(spec.max_episode_steps):
            obs, _, terminated, truncated, info = env.step(expert(obs))
            assert not terminated  # no termination on success: the return counts steps there
            if info["success"] and reached_at is None:
                reached_at = t
            if truncated:
                break
        assert reached_at is not None, f"expert missed the goal in {name} episode {episode}"
        assert reached_at < spec.max_episode_steps // 2
        # It stays: the goal is reached with margin and the point holds still there.
        assert np.linalg.norm(obs[:2] - obs[4:6]) < 0.1
        assert truncated and t == spec.max_episode_steps - 1


@pytest.mark.parametrize("maze", list(MAZE_MAPS))
def test_bfs_paths_are_shortest_and_stay_in_open_cells(maze: str) -> None:
    expert = PointMazeExpert(maze)
    cells = [tuple(c) for c in expert.free_cells]
    for goal in cells:
        for start in cells:
            here, steps = start, 0
            while here != goal:
                nxt = tuple(expert.next_cell[goal[0], goal[1], here[0], here[1]])
                assert expert.free[nxt]
                assert abs(nxt[0] - here[0]) + abs(nxt[1] - here[1]) == 1
                here, steps = nxt, steps + 1
                assert steps <= len(cells)
    # Cell <-> position round trip in gymnasium-robotics' frame.
    centres = expert.cell_to_xy(expert.free_cells)
    np.testing.assert_array_equal(expert.xy_to_cell(centres), expert.free_cells)


def test_observation_layout_and_sparse_reward() -> None:
    env = PointMazeFlatEnv("umaze", 300)
    obs, _ = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (6,)
    np.testing.assert_allclose(obs[4:6], env.goal, rtol=1e-6)
    np.testing.assert_allclose(obs[:2], env.inner.data.qpos[:2], rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, reward, _, _, info = env.step(rng.uniform(-1, 1, 2))
        near = np.linalg.norm(env.inner.data.qpos[:2] - env.goal) <= 0.45
        assert reward == float(near) and info["success"] == near


def test_expert_is_batched() -> None:
    expert = PointMazeExpert("medium")
    obs = np.array([[1.5, 1.5, 0.0, 0.0, -2.5, -1.5], [0.5, -0.5, 1.0, 0.0, 0.5, -0.5]])
    actions = expert(obs.astype(np.float32))
    assert actions.shape == (2, 2) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    np.testing.assert_allclose(actions[1], expert(obs[1]))  # same goal cell: PD on the goal
    np.testing.assert_allclose(actions[1], [-1.0, 0.0])  # 10 * 0 - 1 * 1 = -1 in x


def test_reference_scores_command(tmp_path, capsys) -> None:
    import json

    from diffcps_ray.cli import run_main
    from diffcps_ray.envs import reference_scores

    out = tmp_path / "scores.json"
    assert reference_scores.main(["--episodes", "2", "--seed", "1", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert set(table["tasks"]) == {"pointmaze-umaze", "pointmaze-medium", "pointmaze-large"}
    for entry in table["tasks"].values():
        assert entry["expert_success_rate"] == 1.0
        assert entry["ref_max_score"] > entry["ref_min_score"]
    capsys.readouterr()
    assert run_main(reference_scores.main, ["--episodes", "0", "--out", str(out)]) == 2
    assert "expected at least 1, got 0" in capsys.readouterr().err


# --- the generated data's behaviour policy (data/generate.py) -----------------------------


def test_behaviour_policy_acts_on_one_observation_at_a_time() -> None:
    from diffcps_ray.data.generate import PointMazeBehaviour
    from diffcps_ray.errors import DataError

    behaviour = PointMazeBehaviour("pointmaze-medium", seed=0)
    action = behaviour(np.zeros((1, 6), dtype=np.float32))
    assert action.shape == (1, 2) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    with pytest.raises(DataError, match="num_envs=1"):
        behaviour(np.zeros((2, 6), dtype=np.float32))
    with pytest.raises(DataError, match="no scripted behaviour policy"):
        PointMazeBehaviour("hopper-medium-v2", seed=0)


@pytest.mark.parametrize("task", ["pointmaze-umaze", "pointmaze-medium"])
def test_suite_behaviour_scores_are_what_the_behaviour_policy_scores(task: str) -> None:
    """tune_configs/pointmaze.yaml's behaviour_score per task was measured over 300
    episodes; 30 episodes of another seed agree within their noise."""
    from diffcps_ray.envs.reference_scores import measure_behaviour
    from diffcps_ray.tune.suites import load_suite

    suite = load_suite("pointmaze")
    assert list(suite.tasks) == ["pointmaze-umaze", "pointmaze-medium"]
    measured = measure_behaviour(task, 30, seed=1)
    recorded = suite.tasks[task].behaviour_score
    assert recorded is not None
    assert abs(measured["normalized_score"] - recorded) <= 3 * measured["normalized_score_se"]
    # Between a random policy (0) and the expert (100), and mostly reaching the goal.
    assert 20 < measured["normalized_score"] < 90
    assert measured["success_rate"] > 0.7


def test_behaviour_command_prints_scores_and_writes_nothing(tmp_path, capsys) -> None:
    from diffcps_ray.envs import reference_scores

    out = tmp_path / "scores.json"
    argv = ["--behaviour", "pointmaze-umaze", "--episodes", "2", "--seed", "1", "--out", str(out)]
    assert reference_scores.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("pointmaze-umaze: behaviour return ")
    assert "normalised" in printed and "over 2 episodes, seed 1" in printed
    assert not out.exists()
    assert reference_scores.main(["--behaviour", "hopper-medium-v2", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "--behaviour takes PointMaze tasks (pointmaze-large, pointmaze-medium, "
        "pointmaze-umaze), got 'hopper-medium-v2'."
    )
    assert not out.exists()
