"""Generate transition datasets in the real simulators (no downloads needed).

PointMaze gets the embedded default's behaviour policy (pointmaze-notes.md): a noisy,
detouring scripted expert in a maze2d-style continuing task. Locomotion and AntMaze get
random-policy data, enough to exercise the pipeline in tests.

Every dataset comes in d4rl.qlearning_dataset form with RLlib's column names: ``new_obs``
is the true next observation of the same step (also at episode ends), ``terminateds``
marks true terminal states and ``truncateds`` the last step of an episode cut by a time
limit (or by the end of the data).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from diffcps_ray.envs.tasks import TaskSpec, get_task
from diffcps_ray.errors import DataError

ProgressFn = Callable[[int, int], None]

# PointMaze behaviour policy (pointmaze-notes.md: lighter settings left nothing to improve).
ACTION_NOISE_STD = 1.0
RANDOM_ACTION_PROB = 0.3
DETOUR_PROB = 0.75
LINGER_STEPS = (10, 40)  # inclusive range of steps spent at a reached goal
SEGMENT_STEPS = 1000  # reset to a random cell this often (one "episode" in the data)
GOAL_NOISE = 0.25  # the env's own goal position noise (x maze_size_scaling 1)
DETOUR_RADIUS = 0.5  # a detour cell counts as visited within this distance of its centre
PROGRESS_EVERY = 10_000


def _empty_columns(n: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    return {
        "obs": np.zeros((n, obs_dim), dtype=np.float32),
        "actions": np.zeros((n, act_dim), dtype=np.float32),
        "rewards": np.zeros(n, dtype=np.float32),
        "new_obs": np.zeros((n, obs_dim), dtype=np.float32),
        "terminateds": np.zeros(n, dtype=bool),
        "truncateds": np.zeros(n, dtype=bool),
        "eps_id": np.zeros(n, dtype=np.int64),
        "t": np.zeros(n, dtype=np.int64),
    }


def generate_dataset(
    task: str | TaskSpec,
    num_transitions: int,
    seed: int,
    progress: ProgressFn | None = None,
) -> dict[str, np.ndarray]:
    """``num_transitions`` transitions for ``task``, deterministic given ``seed``.

    ``progress(done, total)`` is called every 10k transitions and at the end.
    """
    spec = get_task(task) if isinstance(task, str) else task
    if num_transitions < 1:
        raise DataError(f"num_transitions must be at least 1, got {num_transitions}.")
    if spec.family == "pointmaze":
        data = _generate_pointmaze(spec, num_transitions, seed, progress)
    else:
        data = _generate_random(spec, num_transitions, seed, progress)
    if progress is not None and num_transitions % PROGRESS_EVERY != 0:
        progress(num_transitions, num_transitions)  # the loop reported multiples already
    return data


def _generate_pointmaze(
    spec: TaskSpec, n: int, seed: int, progress: ProgressFn | None
) -> dict[str, np.ndarray]:
    from diffcps_ray.envs.pointmaze import GOAL_RADIUS, PointMazeExpert, PointMazeFlatEnv

    rng = np.random.default_rng(seed)
    # The env draws start and goal cells from its own RNG, seeded from ours.
    env = PointMazeFlatEnv(spec.env_name, max_episode_steps=n + 1)
    expert = PointMazeExpert(spec.env_name)
    free_cells = expert.free_cells
    cols = _empty_columns(n, spec.obs_dim, spec.act_dim)

    # Draw the per-step randomness in blocks: far cheaper than scalar draws per step.
    is_random = rng.random(n) < RANDOM_ACTION_PROB
    random_actions = rng.uniform(-1.0, 1.0, size=(n, 2))
    noise = rng.normal(0.0, ACTION_NOISE_STD, size=(n, 2))

    def plan_detour() -> np.ndarray | None:
        if rng.random() < DETOUR_PROB:
            return expert.cell_to_xy(free_cells[rng.integers(len(free_cells))])
        return None

    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    detour, linger_left, eps_id, t = plan_detour(), -1, 0, 0
    for i in range(n):
        pos, vel, goal = obs[0:2].astype(np.float64), obs[2:4].astype(np.float64), env.goal
        target = goal if detour is None else detour
        if is_random[i]:
            action = random_actions[i]
        else:
            action = np.clip(expert.act_towards(pos, vel, target) + noise[i], -1.0, 1.0)
        next_obs, reward, _, _, _ = env.step(action)
        next_pos = next_obs[0:2].astype(np.float64)

        if detour is not None and np.linalg.norm(next_pos - detour) <= DETOUR_RADIUS:
            detour = None
        if detour is None and linger_left < 0 and np.linalg.norm(next_pos - goal) <= GOAL_RADIUS:
            linger_left = int(rng.integers(LINGER_STEPS[0], LINGER_STEPS[1] + 1))
        if linger_left > 0:
            linger_left -= 1
        if linger_left == 0:
            # A new goal; the next observation already shows it (qlearning_dataset form).
            cell = free_cells[rng.integers(len(free_cells))]
            new_goal = expert.cell_to_xy(cell) + rng.uniform(-GOAL_NOISE, GOAL_NOISE, 2)
            env.set_goal(new_goal)
            next_obs[4:6] = new_goal
            detour, linger_left = plan_detour(), -1

        cols["obs"][i] = obs
        cols["actions"][i] = action
        cols["rewards"][i] = reward
        cols["new_obs"][i] = next_obs
        cols["eps_id"][i] = eps_id
        cols["t"][i] = t
        t += 1
        if t == SEGMENT_STEPS or i == n - 1:
            # maze2d style: never terminal; the segment is cut by time.
            cols["truncateds"][i] = True
            obs, _ = env.reset()
            detour, linger_left, eps_id, t = plan_detour(), -1, eps_id + 1, 0
        else:
            obs = next_obs
        if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            progress(i + 1, n)
    env.close()
    return cols


def _generate_random(
    spec: TaskSpec, n: int, seed: int, progress: ProgressFn | None
) -> dict[str, np.ndarray]:
    """Uniform random actions in the task's evaluation env (tests and smoke runs)."""
    rng = np.random.default_rng(seed)
    env = spec.make_env()
    cols = _empty_columns(n, spec.obs_dim, spec.act_dim)
    actions = rng.uniform(-1.0, 1.0, size=(n, spec.act_dim)).astype(np.float32)

    def reset_options() -> dict[str, object] | None:
        if spec.family != "antmaze":
            return None
        # A random ant from D4RL's start only covers the first cell; start anywhere.
        from diffcps_ray.envs.antmaze import free_cells

        cells = free_cells(spec.env_name)
        return {"start_cell": cells[rng.integers(len(cells))]}

    obs, _ = env.reset(seed=int(rng.integers(2**31)), options=reset_options())
    eps_id, t = 0, 0
    for i in range(n):
        next_obs, reward, terminated, truncated, _ = env.step(actions[i])
        truncated = truncated or i == n - 1
        cols["obs"][i] = obs
        cols["actions"][i] = actions[i]
        cols["rewards"][i] = reward
        cols["new_obs"][i] = next_obs
        cols["terminateds"][i] = terminated
        cols["truncateds"][i] = truncated and not terminated
        cols["eps_id"][i] = eps_id
        cols["t"][i] = t
        t += 1
        if terminated or truncated:
            obs, _ = env.reset(options=reset_options())
            eps_id, t = eps_id + 1, 0
        else:
            obs = next_obs
        if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            progress(i + 1, n)
    env.close()
    return cols
