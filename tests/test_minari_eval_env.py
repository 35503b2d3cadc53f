"""Evaluation follows the data: a Minari AntMaze dataset made from real rollouts of
gymnasium-robotics' AntMaze_UMaze-v4 (the env Minari's D4RL ports were recorded in) carries
its eval env into the manifest, and evaluation runs there, not in our D4RL-matching env."""

from __future__ import annotations

import copy
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.data.__main__ import main
from diffcps_ray.data.schema import MANIFEST_NAME
from diffcps_ray.data.shards import load_transitions, read_manifest
from diffcps_ray.envs.evaluate import evaluate_policy
from diffcps_ray.envs.recorded import FlatEvalEnv, RecordedEnv
from diffcps_ray.envs.tasks import get_task
from diffcps_ray.errors import DataError

TASK = "antmaze-umaze-v2"
ENV_ID = "AntMaze_UMaze-v4"  # registered by gymnasium-robotics 1.4.2 (v3, v4 and v5)
DATA_STEPS = 25
EVAL_STEPS = 40
# Minari's D4RL umaze ports evaluate on this map: start 'r', goal 'g' (mirrored vs D4RL).
EVAL_MAP = [[1, 1, 1, 1, 1], [1, 0, 0, "r", 1], [1, 0, 1, 1, 1], [1, 0, 0, "g", 1],
            [1, 1, 1, 1, 1]]  # fmt: skip


def write_minari_antmaze(dataset_id: str, *, with_eval_env: bool, episodes: int = 2) -> None:
    """Random rollouts of AntMaze_UMaze-v4 saved with minari.create_dataset_from_buffers
    (env=... records env_spec; eval_env=... records eval_env_spec, as Minari's ports do)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    import diffcps_ray.envs.robotics  # noqa: F401 - registers AntMaze_* quietly

    env = gym.make(ENV_ID, max_episode_steps=DATA_STEPS)
    env.action_space.seed(0)
    buffers = []
    for index in range(episodes):
        obs, _ = env.reset(seed=index)
        observations = {key: [value] for key, value in obs.items()}
        actions, rewards, terminations, truncations = [], [], [], []
        while True:
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in obs.items():
                observations[key].append(value)
            actions.append(action)
            rewards.append(float(reward))
            terminations.append(terminated)
            truncations.append(truncated)
            if terminated or truncated:
                break
        buffers.append(
            EpisodeBuffer(
                id=index,
                observations={key: np.asarray(v) for key, v in observations.items()},
                actions=np.asarray(actions),
                rewards=rewards,
                terminations=terminations,
                truncations=truncations,
            )
        )
    eval_spec = None
    if with_eval_env:
        eval_spec = copy.deepcopy(env.spec)
        eval_spec.kwargs.update(maze_map=EVAL_MAP, continuing_task=True, reset_target=True)
        eval_spec.max_episode_steps = EVAL_STEPS
    minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=env,
        eval_env=eval_spec,
        algorithm_name="random",
        author="diffcps-ray tests",
        author_email="tests@example.invalid",
        code_permalink="https://example.invalid/diffcps-ray",
        description="random AntMaze_UMaze-v4 rollouts for tests",
    )
    env.close()


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari nags about eval_env, gymnasium about v4
        yield root


def _convert(dataset_id: str, out) -> int:
    return run_main(main, ["convert", "--minari", dataset_id, "--task", TASK, "--out", str(out)])


def test_manifest_records_eval_env_and_evaluation_runs_there(minari_root, tmp_path):
    write_minari_antmaze("test/antmaze/umaze-v1", with_eval_env=True)
    assert _convert("test/antmaze/umaze-v1", tmp_path / "data") == 0

    manifest = read_manifest(tmp_path / "data" / TASK)
    record = manifest.eval_env
    assert record is not None and "eval_env" not in manifest.source
    # metadata.json's eval_env_spec wins over env_spec (its map, kwargs and time limit).
    assert record["kind"] == "gymnasium" and record["id"] == ENV_ID
    assert record["max_episode_steps"] == EVAL_STEPS
    assert record["kwargs"]["maze_map"] == EVAL_MAP and record["kwargs"]["continuing_task"]
    assert record["obs_keys"] == ["achieved_goal", "observation"]

    spec = get_task(TASK).with_eval_env(record)
    assert spec.max_episode_steps == EVAL_STEPS and spec.scores_success
    env = spec.make_env(seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (29,) and obs.dtype == np.float32
    assert env.action_space.shape == (8,) and (env.action_space.low == -1).all()
    assert type(env.unwrapped).__module__.startswith("gymnasium_robotics")
    env.close()

    rng = np.random.default_rng(0)
    result = evaluate_policy(spec, lambda o: rng.uniform(-1, 1, (len(o), 8)), 2, seed=0,
                             num_envs=2)  # fmt: skip
    assert result["num_episodes"] == 2 and 1 <= result["episode_length_mean"] <= EVAL_STEPS
    assert result["normalized_score"] == pytest.approx(100 * result["success_rate"])


def test_env_spec_is_the_fallback_and_observations_match_the_data(minari_root, tmp_path):
    # Without eval_env, Minari records only env_spec: evaluation runs in the data's env,
    # and a reset with the data's seed gives the data's first observation, flattened alike.
    write_minari_antmaze("test/antmaze/umaze-v1", with_eval_env=False)
    assert _convert("test/antmaze/umaze-v1", tmp_path / "data") == 0
    record = read_manifest(tmp_path / "data" / TASK).eval_env
    assert record["id"] == ENV_ID and record["max_episode_steps"] == DATA_STEPS

    env = get_task(TASK).with_eval_env(record).make_env()
    obs, _ = env.reset(seed=0)
    first = load_transitions(tmp_path / "data" / TASK)["obs"][0]
    np.testing.assert_allclose(obs, first, rtol=0, atol=1e-6)
    env.close()


def test_older_manifests_without_eval_env_still_load(minari_root, tmp_path):
    write_minari_antmaze("test/antmaze/umaze-v1", with_eval_env=True, episodes=1)
    assert _convert("test/antmaze/umaze-v1", tmp_path / "data") == 0
    path = tmp_path / "data" / TASK / MANIFEST_NAME
    raw = json.loads(path.read_text())
    del raw["eval_env"]
    path.write_text(json.dumps(raw))
    manifest = read_manifest(path.parent)
    assert manifest.eval_env is None
    assert get_task(TASK).with_eval_env(manifest.eval_env) is get_task(TASK)


class _GoalEnv(gym.Env):
    """A fake goal env with actions in [-2, 2]: success on the second step."""

    observation_space = gym.spaces.Dict(
        {"observation": gym.spaces.Box(-np.inf, np.inf, (3,)),
         "achieved_goal": gym.spaces.Box(-np.inf, np.inf, (2,))}
    )  # fmt: skip
    action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps, self.last_action = 0, None
        return {"observation": np.arange(3.0), "achieved_goal": np.array([7.0, 8.0])}, {}

    def step(self, action):
        self.steps += 1
        self.last_action = action
        obs = {"observation": np.zeros(3), "achieved_goal": np.ones(2)}
        return obs, 0.0, False, False, {"success": self.steps == 2}


def test_wrapper_flattens_rescales_actions_and_stops_at_success():
    env = FlatEvalEnv(_GoalEnv(), ("achieved_goal", "observation"), 5, 2, goal_task=True)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [7, 8, 0, 1, 2])  # obs_keys order, as the converter
    _, _, terminated, _, _ = env.step(np.array([1.0, -0.5]))
    np.testing.assert_allclose(env.unwrapped.last_action, [2.0, -1.0])  # [-1, 1] -> [-2, 2]
    assert not terminated
    _, _, terminated, _, info = env.step(np.zeros(2))
    assert terminated and info["success"]


def test_malformed_records_are_refused_with_a_sentence():
    with pytest.raises(DataError, match="kind"):
        RecordedEnv.from_record({"kind": "d4rl", "id": ENV_ID})
    with pytest.raises(DataError, match="max_episode_steps"):
        RecordedEnv.from_record({"kind": "gymnasium", "id": ENV_ID, "max_episode_steps": 0})
    with pytest.raises(DataError, match="'Nope-v0' could not be made"):
        get_task(TASK).with_eval_env({"kind": "gymnasium", "id": "Nope-v0"}).make_env()
    with pytest.raises(DataError, match="flatten to 27"):
        get_task(TASK).with_eval_env(
            {"kind": "gymnasium", "id": ENV_ID, "obs_keys": ["observation"]}
        ).make_env()
