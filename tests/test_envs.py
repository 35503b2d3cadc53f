"""Task registry: names, dims against the real simulators, reference scores, file names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffcps_ray.envs import tasks
from diffcps_ray.envs.tasks import get_task, list_tasks
from diffcps_ray.errors import DiffCPSError, UnknownTaskError


def _time_limit(env) -> int:
    if getattr(env, "spec", None) is not None and env.spec.max_episode_steps is not None:
        return env.spec.max_episode_steps
    return env.unwrapped.max_episode_steps


@pytest.mark.parametrize("name", list_tasks())
def test_registry_dims_match_the_simulator(name: str) -> None:
    spec = get_task(name)
    env = spec.make_env(seed=0)
    try:
        assert env.observation_space.shape == (spec.obs_dim,)
        assert env.observation_space.dtype == np.float32
        assert env.action_space.shape == (spec.act_dim,)
        np.testing.assert_array_equal(env.action_space.low, -1.0)
        np.testing.assert_array_equal(env.action_space.high, 1.0)
        obs, _ = env.reset(seed=1)
        assert obs.shape == (spec.obs_dim,) and obs.dtype == np.float32
        obs, reward, _, _, _ = env.step(env.action_space.sample())
        assert obs.shape == (spec.obs_dim,) and obs.dtype == np.float32
        assert np.isfinite(reward)
        assert _time_limit(env) == spec.max_episode_steps
    finally:
        env.close()


def test_task_families_and_counts() -> None:
    assert len(list_tasks("locomotion")) == 9
    assert len(list_tasks("antmaze")) == 12
    assert list_tasks("pointmaze") == ["pointmaze-large", "pointmaze-medium", "pointmaze-umaze"]
    assert len(list_tasks()) == 24
    for version in ("v0", "v2"):
        for suffix in ("umaze", "umaze-diverse", "medium-play", "medium-diverse"):
            assert f"antmaze-{suffix}-{version}" in list_tasks("antmaze")
    with pytest.raises(UnknownTaskError):
        list_tasks("robots")


def test_unknown_task_names_close_matches() -> None:
    with pytest.raises(UnknownTaskError) as info:
        get_task("hoper-medium-v2")
    message = str(info.value)
    assert isinstance(info.value, DiffCPSError) and isinstance(info.value, ValueError)
    assert "'hoper-medium-v2'" in message and "'hopper-medium-v2'" in message
    assert "\n" not in message and message.endswith(("?", "."))
    with pytest.raises(UnknownTaskError, match="list_tasks"):
        get_task("zzzz")


def test_normalized_score() -> None:
    hopper = get_task("hopper-medium-v2")
    assert hopper.normalized_score(-20.272305) == pytest.approx(0.0)
    assert hopper.normalized_score(3234.3) == pytest.approx(100.0)
    cheetah = get_task("halfcheetah-medium-expert-v2")
    assert cheetah.normalized_score((12135.0 - 280.178953) / 2) == pytest.approx(50.0)
    ant = get_task("antmaze-large-diverse-v2")
    assert ant.normalized_score(1.0) == 100.0 and ant.normalized_score(0.25) == 25.0


def test_locomotion_reference_scores_and_files() -> None:
    walker = get_task("walker2d-medium-replay-v2")
    assert (walker.ref_min_score, walker.ref_max_score) == (1.629008, 4592.3)
    assert walker.d4rl_filename == "walker2d_medium_replay-v2.hdf5"
    assert get_task("hopper-medium-expert-v2").d4rl_filename == "hopper_medium_expert-v2.hdf5"
    assert walker.reward_tune == "none" and walker.minari_id is None
    assert walker.max_episode_steps == 1000


def test_walker_uses_d4rl_foot_friction() -> None:
    env = get_task("walker2d-medium-v2").make_env()
    model = env.unwrapped.model
    # D4RL's model: right foot 0.9, left foot 1.9 (v5's default model sets both to 1.9).
    assert model.geom_friction[model.geom("foot_geom").id, 0] == pytest.approx(0.9)
    assert model.geom_friction[model.geom("foot_left_geom").id, 0] == pytest.approx(1.9)
    env.close()


def test_antmaze_specs() -> None:
    v0 = get_task("antmaze-umaze-v0")
    v2 = get_task("antmaze-umaze-v2")
    assert v0.d4rl_filename == "Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse.hdf5"
    assert v2.d4rl_filename == (
        "Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5"
    )
    assert get_task("antmaze-large-play-v2").d4rl_filename == (
        "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5"
    )
    assert v2.minari_id == "D4RL/antmaze/umaze-v1"
    assert get_task("antmaze-medium-diverse-v0").minari_id == "D4RL/antmaze/medium-diverse-v1"
    assert v2.reward_tune == "cql_antmaze"
    assert (v2.ref_min_score, v2.ref_max_score) == (0.0, 1.0)
    assert v2.max_episode_steps == 700
    assert get_task("antmaze-medium-play-v2").max_episode_steps == 1000


def test_pointmaze_reference_scores_come_from_the_table() -> None:
    table = json.loads(tasks.REFERENCE_SCORES_PATH.read_text())
    for name in list_tasks("pointmaze"):
        spec = get_task(name)
        entry = table["tasks"][name]
        assert spec.ref_min_score == entry["ref_min_score"]
        assert spec.ref_max_score == entry["ref_max_score"]
        assert 0 < spec.ref_min_score < spec.ref_max_score <= spec.max_episode_steps
        assert spec.minari_id is None and spec.d4rl_filename is None


def test_task_spec_is_frozen() -> None:
    spec = get_task("pointmaze-umaze")
    with pytest.raises(AttributeError):
        spec.obs_dim = 7  # type: ignore[misc]
