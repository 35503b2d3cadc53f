"""Read D4RL HDF5 files with h5py and turn them into d4rl.qlearning_dataset transitions.

The ``d4rl`` package is not needed (it cannot even be imported without MuJoCo 2.1).
The output matches ``d4rl.qlearning_dataset(env, terminate_on_end=False)`` row for row:

- for i in 0..N-2: obs = observations[i], new_obs = observations[i + 1] (the stored
  next_observations are ignored, as D4RL does; AntMaze files have none),
  terminateds = terminals[i];
- rows with timeouts[i] set are dropped; files without a timeouts key are cut into
  episodes by counting max_episode_steps with D4RL's own counter (which restarts at 1,
  not 0, after a terminal);
- (N, 1) rewards/terminals/timeouts are squeezed.

On top of that each row gets ``eps_id`` and ``t`` (the step within its episode in the
file), and ``truncateds`` marks the last kept row of an episode that did not end in a
terminal state (it hit the time limit, or the file ended). Terminals end an episode
except in AntMaze, whose terminals are relabelled rewards that occur mid-episode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from diffcps_ray.data.shards import sha256_file
from diffcps_ray.envs.tasks import TaskSpec, get_task
from diffcps_ray.errors import DataError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
FLAT_KEYS = ("rewards", "terminals", "timeouts")


def read_hdf5(path: str | os.PathLike[str], spec: TaskSpec) -> dict[str, np.ndarray]:
    """The arrays qlearning_dataset needs from a D4RL file, validated for ``spec``.

    Returns observations, actions, rewards, terminals (bool) and, when present,
    timeouts (bool). Every problem raises a DataError naming the file and the key.
    """
    import h5py

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes).")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path} is not a readable HDF5 file ({_reason(error)}).") from None
    arrays: dict[str, np.ndarray] = {}
    with handle:
        for key in (*REQUIRED_KEYS, "timeouts"):
            if key not in handle:
                if key == "timeouts":
                    continue
                raise DataError(f"{path} has no key {key!r} (a D4RL file needs {REQUIRED_KEYS}).")
            node = handle[key]
            if not isinstance(node, h5py.Dataset):
                raise DataError(f"{path}: key {key!r} is a group, not an array.")
            try:
                arrays[key] = node[()]
            except (OSError, ValueError, RuntimeError) as error:
                raise DataError(
                    f"{path}: key {key!r} could not be read ({_reason(error)}); the file may "
                    f"be truncated."
                ) from None
    return _checked(arrays, path, spec)


def _reason(error: BaseException) -> str:
    """h5py's messages are long; keep the first clause."""
    return str(error).split("\n")[0].rstrip(".")


def _checked(arrays: dict[str, np.ndarray], path: Path, spec: TaskSpec) -> dict[str, np.ndarray]:
    num_rows = arrays["rewards"].shape[0] if arrays["rewards"].ndim else 0
    if num_rows == 0:
        raise DataError(f"{path}: key 'rewards' is empty, so the file holds no transitions.")
    widths = {"observations": spec.obs_dim, "actions": spec.act_dim}
    for key, array in list(arrays.items()):
        if array.ndim == 0 or array.shape[0] != num_rows:
            length = array.shape[0] if array.ndim else "no"
            raise DataError(f"{path}: key {key!r} has {length} rows but 'rewards' has {num_rows}.")
        if key in FLAT_KEYS:
            if array.shape == (num_rows, 1):
                array = array[:, 0]  # older files store (N, 1)
            if array.shape != (num_rows,):
                raise DataError(
                    f"{path}: key {key!r} has shape {array.shape}, expected ({num_rows},)."
                )
        elif array.shape != (num_rows, widths[key]):
            raise DataError(
                f"{path}: key {key!r} has shape {array.shape}, but task {spec.name!r} needs "
                f"({num_rows}, {widths[key]})."
            )
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise DataError(f"{path}: key {key!r} has non-numeric dtype {array.dtype}.")
        if np.issubdtype(array.dtype, np.floating):
            finite = np.isfinite(array)
            if not finite.all():
                row = int(np.argwhere(~finite)[0][0])
                raise DataError(f"{path}: key {key!r} holds NaN or inf (first at row {row}).")
        if key in ("terminals", "timeouts"):
            array = array != 0
        arrays[key] = array
    return arrays


def count_timeouts(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """The timeouts D4RL infers for a file without a timeouts key.

    qlearning_dataset walks i over 0..N-2 with a counter: a row whose counter equals
    max_episode_steps - 1 is a timeout (counter back to 0); a terminal row resets the
    counter to 0 and then, like every kept row, increments it, so the row after a
    terminal starts at 1. Worked out per run between terminals instead of per row.
    """
    num_rows = len(terminals)
    timeouts = np.zeros(num_rows, dtype=bool)
    if num_rows < 2:
        return timeouts
    last = num_rows - 2  # qlearning_dataset never looks at the final row
    run_ends = [*np.flatnonzero(terminals[: last + 1]).tolist(), last]
    start, step = 0, 0
    for end in run_ends:
        if start > end:
            continue
        first = start + (max_episode_steps - 1 - step)
        if first <= end:
            timeouts[first : end + 1 : max_episode_steps] = True
        # A terminal that is also a timeout is skipped like a timeout (next row: 0);
        # otherwise the terminal resets and increments (next row: 1).
        step = 0 if timeouts[end] else 1
        start = end + 1
    return timeouts


def qlearning_transitions(
    arrays: dict[str, np.ndarray], max_episode_steps: int, terminals_end_episodes: bool
) -> dict[str, np.ndarray]:
    """d4rl.qlearning_dataset's rows, in RLlib's column names, plus eps_id/t/truncateds."""
    observations = arrays["observations"]
    terminals = arrays["terminals"]
    num_rows = len(terminals)
    timeouts = arrays.get("timeouts")
    if timeouts is None:
        timeouts = count_timeouts(terminals, max_episode_steps)

    # Episodes in the file: a row that times out (or terminates, outside AntMaze) is
    # the last of its episode.
    ends = timeouts | terminals if terminals_end_episodes else timeouts.copy()
    episode = np.zeros(num_rows, dtype=np.int64)
    np.cumsum(ends[:-1], out=episode[1:])
    starts = np.flatnonzero(np.r_[True, ends[:-1]])
    step = np.arange(num_rows, dtype=np.int64) - starts[episode]

    kept = np.flatnonzero(~timeouts[: num_rows - 1])
    kept_episode = episode[kept]
    # Last kept row of each episode: the next kept row belongs to another episode.
    last_of_episode = np.r_[kept_episode[1:] != kept_episode[:-1], True]
    terminateds = terminals[kept]
    _, eps_id = np.unique(kept_episode, return_inverse=True)
    return {
        "obs": observations[kept].astype(np.float32, copy=False),
        "actions": arrays["actions"][kept].astype(np.float32, copy=False),
        "rewards": arrays["rewards"][kept].astype(np.float32, copy=False),
        "new_obs": observations[kept + 1].astype(np.float32, copy=False),
        "terminateds": terminateds,
        "truncateds": last_of_episode & ~terminateds,
        "eps_id": eps_id.astype(np.int64, copy=False),
        "t": step[kept],
    }


def load_d4rl(
    path: str | os.PathLike[str], task: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Transitions of a D4RL file for ``task`` and the manifest's source record."""
    spec = get_task(task)
    path = Path(path).expanduser()
    arrays = read_hdf5(path, spec)
    transitions = qlearning_transitions(
        arrays,
        max_episode_steps=spec.max_episode_steps,
        terminals_end_episodes=spec.family != "antmaze",
    )
    if len(transitions["rewards"]) == 0:
        raise DataError(f"{path}: every row of key 'timeouts' is set, so no transition is left.")
    source = {
        "kind": "d4rl",
        "file": str(path.resolve()),
        "sha256": sha256_file(path),
        "rows_in_file": len(arrays["rewards"]),
        "has_timeouts": "timeouts" in arrays,
    }
    return transitions, source
