"""Helpers for the data tests (no tests here): real simulator rollouts written in the exact
D4RL and Minari formats, and plain reference computations to compare the converters with.
"""

from __future__ import annotations

import functools
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np

HOPPER_LIMIT = 80  # short time limit so a few episodes time out instead of falling


@functools.cache
def hopper_episodes(num_episodes: int = 12, seed: int = 0) -> tuple[dict[str, np.ndarray], ...]:
    """Hopper-v5 episodes: full-scale random actions fall, near-zero ones hit the limit."""
    env = gym.make("Hopper-v5", max_episode_steps=HOPPER_LIMIT)
    env.action_space.seed(seed)
    episodes = []
    for index in range(num_episodes):
        scale = 1.0 if index % 3 else 0.05
        obs, _ = env.reset(seed=seed + index)
        observations, actions, rewards, terms, truncs, qpos, qvel = [obs], [], [], [], [], [], []
        while True:
            data = env.unwrapped.data
            qpos.append(data.qpos.copy())  # D4RL locomotion: state before the step
            qvel.append(data.qvel.copy())
            action = (scale * env.action_space.sample()).astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated and not terminated)
            if terminated or truncated:
                break
        episodes.append(
            {
                "observations": np.asarray(observations, dtype=np.float32),
                "actions": np.asarray(actions, dtype=np.float32),
                "rewards": np.asarray(rewards, dtype=np.float64),
                "terminations": np.asarray(terms),
                "truncations": np.asarray(truncs),
                "qpos": np.asarray(qpos),
                "qvel": np.asarray(qvel),
            }
        )
    env.close()
    kinds = {(bool(e["terminations"][-1]), bool(e["truncations"][-1])) for e in episodes}
    assert kinds == {(True, False), (False, True)}, "want both falls and timeouts"
    return tuple(episodes)


@functools.cache
def antmaze_episodes(num_episodes: int = 3, seed: int = 0) -> tuple[dict[str, np.ndarray], ...]:
    """Random episodes in the D4RL-matching AntMaze env (700 steps each, umaze)."""
    from diffcps_ray.envs.tasks import get_task

    env = get_task("antmaze-umaze-v2").make_env(seed=seed)
    episodes = []
    for index in range(num_episodes):
        obs, _ = env.reset(seed=seed + index)
        observations, actions, terms, truncs = [obs], [], [], []
        while True:
            action = env.action_space.sample().astype(np.float32)
            obs, _, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            terms.append(terminated)
            truncs.append(truncated)
            if terminated or truncated:
                break
        observations = np.asarray(observations, dtype=np.float32)
        # D4RL relabelling with a goal the ant actually visits: reward = within 0.5 of the
        # goal, terminals = rewards, so runs of terminals occur mid-episode.
        goal = observations[len(observations) // 3, :2] + np.float32(0.3)
        rewards = (np.linalg.norm(observations[1:, :2] - goal, axis=1) <= 0.5).astype(np.float32)
        episodes.append(
            {
                "observations": observations,
                "actions": np.asarray(actions, dtype=np.float32),
                "rewards": rewards,
                "terminations": np.asarray(terms),
                "truncations": np.asarray(truncs),
                "goal": np.tile(goal, (len(actions), 1)),
            }
        )
    env.close()
    return tuple(episodes)


def write_d4rl_locomotion(
    path: Path,
    episodes: tuple[dict[str, np.ndarray], ...],
    *,
    column_vectors: bool = False,
    timeouts: bool = True,
) -> Path:
    """A D4RL v2 locomotion file (observations, next_observations, ..., infos/, metadata/)."""
    rows = {
        key: np.concatenate([e[key] for e in episodes])
        for key in ("actions", "rewards", "terminations", "truncations", "qpos", "qvel")
    }
    observations = np.concatenate([e["observations"][:-1] for e in episodes])
    next_observations = np.concatenate([e["observations"][1:] for e in episodes])
    rewards = rows["rewards"].astype(np.float32)
    terminals = rows["terminations"].astype(bool)
    with h5py.File(path, "w") as f:
        f["observations"] = observations
        f["next_observations"] = next_observations
        f["actions"] = rows["actions"]
        f["rewards"] = rewards[:, None] if column_vectors else rewards
        f["terminals"] = terminals[:, None] if column_vectors else terminals
        if timeouts:
            f["timeouts"] = rows["truncations"].astype(bool)
        f["infos/qpos"] = rows["qpos"]
        f["infos/qvel"] = rows["qvel"]
        f["infos/action_log_probs"] = np.zeros(len(rewards), dtype=np.float32)
        f["metadata/algorithm"] = "random"
        f["metadata/policy/nonlinearity"] = "relu"
    return path


def write_d4rl_antmaze(
    path: Path, episodes: tuple[dict[str, np.ndarray], ...], *, timeouts: bool = True
) -> Path:
    """A D4RL AntMaze file: no next_observations, terminals = rewards, infos after the step."""
    observations = np.concatenate([e["observations"][:-1] for e in episodes])
    after = np.concatenate([e["observations"][1:] for e in episodes])
    rewards = np.concatenate([e["rewards"] for e in episodes])
    with h5py.File(path, "w") as f:
        f["observations"] = observations
        f["actions"] = np.concatenate([e["actions"] for e in episodes])
        f["rewards"] = rewards
        f["terminals"] = rewards.copy()  # stored as 0/1 floats
        if timeouts:
            f["timeouts"] = np.concatenate([e["truncations"] for e in episodes]).astype(bool)
        f["infos/goal"] = np.concatenate([e["goal"] for e in episodes])
        f["infos/qpos"] = after[:, :15]
        f["infos/qvel"] = after[:, 15:]
    return path


def reference_qlearning(
    dataset: dict[str, np.ndarray], max_episode_steps: int
) -> dict[str, np.ndarray]:
    """d4rl.qlearning_dataset(terminate_on_end=False), written out plainly."""
    n = dataset["rewards"].shape[0]
    use_timeouts = "timeouts" in dataset
    obs_, next_obs_, action_, reward_, done_ = [], [], [], [], []
    episode_step = 0
    for i in range(n - 1):
        done_bool = bool(dataset["terminals"][i])
        if use_timeouts:
            final_timestep = bool(dataset["timeouts"][i])
        else:
            final_timestep = episode_step == max_episode_steps - 1
        if final_timestep:
            episode_step = 0
            continue
        if done_bool:
            episode_step = 0
        obs_.append(dataset["observations"][i].astype(np.float32))
        next_obs_.append(dataset["observations"][i + 1].astype(np.float32))
        action_.append(dataset["actions"][i])
        reward_.append(dataset["rewards"][i])
        done_.append(done_bool)
        episode_step += 1
    return {
        "obs": np.array(obs_),
        "actions": np.array(action_, dtype=np.float32),
        "rewards": np.array(reward_, dtype=np.float32),
        "new_obs": np.array(next_obs_),
        "terminateds": np.array(done_),
    }


def read_hdf5_plain(path: Path) -> dict[str, np.ndarray]:
    """What d4rl's get_dataset returns for our keys, squeezing (N, 1) columns."""
    with h5py.File(path, "r") as f:
        data = {
            k: f[k][()]
            for k in ("observations", "actions", "rewards", "terminals", "timeouts")
            if k in f
        }
    for key in ("rewards", "terminals", "timeouts"):
        if key in data and data[key].ndim == 2:
            data[key] = data[key][:, 0]
    return data


def reference_minari(episodes: tuple[dict[str, np.ndarray], ...]) -> dict[str, np.ndarray]:
    """Every step of every episode as (obs[t], obs[t + 1]); the last step of an episode
    that did not terminate counts as truncated."""
    rows: dict[str, list] = {
        k: [] for k in ("obs", "actions", "rewards", "new_obs", "terminateds", "truncateds")
    }
    for episode in episodes:
        steps = len(episode["rewards"])
        for t in range(steps):
            rows["obs"].append(episode["observations"][t])
            rows["new_obs"].append(episode["observations"][t + 1])
            rows["actions"].append(episode["actions"][t])
            rows["rewards"].append(np.float32(episode["rewards"][t]))
            rows["terminateds"].append(bool(episode["terminations"][t]))
            last = t == steps - 1
            rows["truncateds"].append(
                bool(episode["truncations"][t]) or (last and not episode["terminations"][t])
            )
    return {k: np.array(v) for k, v in rows.items()}


def sort_rows(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows in (eps_id, t) order: Ray Data does not promise to keep file order."""
    order = np.lexsort((np.asarray(columns["t"]), np.asarray(columns["eps_id"])))
    return {k: np.asarray(v)[order] for k, v in columns.items()}


def assert_same_rows(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for key, want in expected.items():
        got = np.asarray(actual[key])
        if key in ("terminateds", "truncateds"):
            got = got.astype(bool)
        assert got.shape == want.shape, (key, got.shape, want.shape)
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=key)


def leftovers(root: Path) -> list[str]:
    """Everything under root (hidden temporary directories included)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def write_minari(
    dataset_id: str,
    episodes: tuple[dict[str, np.ndarray], ...],
    *,
    dict_observations: bool = False,
) -> None:
    """A real Minari dataset in $MINARI_DATASETS_PATH (set by the test) via Minari itself.

    ``dict_observations`` stores AntMaze's layout: achieved_goal (x, y), observation (the
    other 27 entries), desired_goal.
    """
    import minari
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    obs_dim = episodes[0]["observations"].shape[1]
    act_dim = episodes[0]["actions"].shape[1]
    buffers = []
    for index, episode in enumerate(episodes):
        observations: np.ndarray | dict[str, np.ndarray] = episode["observations"].astype(
            np.float64
        )
        if dict_observations:
            flat = episode["observations"].astype(np.float64)
            goal = np.vstack([episode["goal"], episode["goal"][-1:]]).astype(np.float64)
            observations = {
                "achieved_goal": flat[:, :2],
                "desired_goal": goal,
                "observation": flat[:, 2:],
            }
        buffers.append(
            EpisodeBuffer(
                id=index,  # distinct ids: Minari merges buffers that share one
                observations=observations,
                actions=episode["actions"],
                rewards=list(episode["rewards"].astype(np.float64)),
                terminations=list(episode["terminations"]),
                truncations=list(episode["truncations"]),
            )
        )
    box = functools.partial(spaces.Box, -np.inf, np.inf, dtype=np.float64)
    if dict_observations:
        observation_space = spaces.Dict(
            {
                "achieved_goal": box((2,)),
                "desired_goal": box((2,)),
                "observation": box((obs_dim - 2,)),
            }
        )
    else:
        observation_space = box((obs_dim,))
    minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        observation_space=observation_space,
        action_space=spaces.Box(-1.0, 1.0, (act_dim,), dtype=np.float32),
        algorithm_name="random",
        author="diffcps-ray tests",
        author_email="tests@example.invalid",
        code_permalink="https://example.invalid/diffcps-ray",
        description="random rollouts for tests",
    )


def the_error(stderr: str) -> str:
    """The single ``error: ...`` line a failing command prints (progress lines aside)."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]
