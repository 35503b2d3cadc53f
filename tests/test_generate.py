"""generate_dataset: columns, dtypes, determinism, qlearning_dataset consistency."""

from __future__ import annotations

import numpy as np
import pytest

from diffcps_ray.data.generate import SEGMENT_STEPS, generate_dataset
from diffcps_ray.envs.pointmaze import PointMazeExpert
from diffcps_ray.envs.tasks import get_task
from diffcps_ray.errors import DataError

COLUMNS = {
    "obs": np.float32,
    "actions": np.float32,
    "rewards": np.float32,
    "new_obs": np.float32,
    "terminateds": np.bool_,
    "truncateds": np.bool_,
    "eps_id": np.int64,
    "t": np.int64,
}
CASES = [
    ("pointmaze-umaze", 2500), ("pointmaze-medium", 2500), ("hopper-medium-v2", 600),
    ("antmaze-umaze-v2", 400),
]
# The generated suite's tasks: each one's data must have the recipe's shape.
POINTMAZE_SUITE_TASKS = ["pointmaze-umaze", "pointmaze-medium"]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def generated(request) -> tuple[str, int, dict[str, np.ndarray]]:
    task, n = request.param
    return task, n, generate_dataset(task, n, seed=7)


def test_columns_dims_and_dtypes(generated) -> None:
    task, n, data = generated
    spec = get_task(task)
    assert set(data) == set(COLUMNS)
    for key, dtype in COLUMNS.items():
        assert data[key].dtype == dtype, key
        assert len(data[key]) == n, key
    assert data["obs"].shape == data["new_obs"].shape == (n, spec.obs_dim)
    assert data["actions"].shape == (n, spec.act_dim)
    assert np.abs(data["actions"]).max() <= 1.0
    assert np.isfinite(data["obs"]).all() and np.isfinite(data["new_obs"]).all()


def test_episodes_are_consistent(generated) -> None:
    data = generated[2]
    eps, t = data["eps_id"], data["t"]
    same = eps[1:] == eps[:-1]
    # new_obs is the next observation within an episode (qlearning_dataset form).
    np.testing.assert_array_equal(data["new_obs"][:-1][same], data["obs"][1:][same])
    # Episodes are contiguous, numbered in order, t counts from 0.
    assert eps[0] == 0 and t[0] == 0
    assert np.all(np.diff(eps) >= 0) and np.all(np.diff(eps) <= 1)
    np.testing.assert_array_equal(t[1:][same], t[:-1][same] + 1)
    assert np.all(t[1:][~same] == 0)
    # Exactly the last step of every episode is terminal or truncated, never both.
    ends = data["terminateds"] | data["truncateds"]
    np.testing.assert_array_equal(ends[:-1], ~same)
    assert ends[-1]
    assert not np.any(data["terminateds"] & data["truncateds"])


def test_deterministic_per_seed() -> None:
    a = generate_dataset("pointmaze-umaze", 1500, seed=3)
    b = generate_dataset("pointmaze-umaze", 1500, seed=3)
    c = generate_dataset("pointmaze-umaze", 1500, seed=4)
    for key in COLUMNS:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["obs"], c["obs"])
    h1 = generate_dataset("hopper-medium-v2", 200, seed=3)
    h2 = generate_dataset("hopper-medium-v2", 200, seed=3)
    np.testing.assert_array_equal(h1["new_obs"], h2["new_obs"])


def test_the_pointmaze_suite_is_the_tasks_tested_here() -> None:
    from diffcps_ray.tune.suites import load_suite

    assert list(load_suite("pointmaze").tasks) == POINTMAZE_SUITE_TASKS


@pytest.mark.parametrize("task", POINTMAZE_SUITE_TASKS)
def test_pointmaze_recipe(task: str) -> None:
    data = generate_dataset(task, 2500, seed=7)
    obs, new_obs, eps = data["obs"], data["new_obs"], data["eps_id"]
    # maze2d style: never terminal.
    assert not data["terminateds"].any()
    # One goal per episode, in obs and new_obs alike: as in evaluation, a goal never moves
    # under the agent.
    for e in np.unique(eps):
        goals = np.concatenate([obs[eps == e, 4:6], new_obs[eps == e, 4:6]])
        assert (goals == goals[0]).all(), f"episode {e} shows two goals"
    # An episode ends by a new goal (the point carries on from where it was) or by the
    # reset to a random cell every SEGMENT_STEPS steps (it jumps).
    ends = np.flatnonzero(data["truncateds"][:-1])
    carries_on = (new_obs[ends, :4] == obs[ends + 1, :4]).all(axis=1)
    assert SEGMENT_STEPS == 1000
    np.testing.assert_array_equal(ends[~carries_on] + 1, [1000, 2000])
    assert carries_on.sum() >= 3  # goals get reached, lingered at, and replaced
    assert (obs[ends[carries_on] + 1, 4:6] != obs[ends[carries_on], 4:6]).any(axis=1).all()
    # Sparse reward against the goal shown in obs, at the position after the step.
    dist = np.linalg.norm(new_obs[:, :2] - obs[:, 4:6], axis=1)
    np.testing.assert_array_equal(data["rewards"], (dist <= 0.45).astype(np.float32))
    # The point lingers at a reached goal before the next one (noise may push it out).
    assert data["rewards"][ends[carries_on][:, None] - np.arange(10)].mean() > 0.5
    assert 0.02 < data["rewards"].mean() < 0.5
    # Positions stay inside the maze's outer walls (1 x 1 cells, the map centred on 0)
    # and every goal lies in a free cell.
    expert = PointMazeExpert(get_task(task).env_name)
    inside = np.array([expert.cols, expert.rows]) / 2 - 1.0
    assert (np.abs(obs[:, :2]) <= inside).all()
    goal_cells = expert.xy_to_cell(obs[:, 4:6].astype(np.float64))
    assert expert.free[goal_cells[:, 0], goal_cells[:, 1]].all()


def test_progress_and_bad_size() -> None:
    calls: list[tuple[int, int]] = []
    generate_dataset("pointmaze-umaze", 50, seed=0, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (50, 50)
    with pytest.raises(DataError):
        generate_dataset("pointmaze-umaze", 0, seed=0)
