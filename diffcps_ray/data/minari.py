"""Read a local Minari dataset into the same transition columns as the D4RL reader.

Minari stores whole episodes (T + 1 observations, T actions/rewards/terminations/
truncations), so each step's next observation is the true one, also at the last step:
every step becomes a row (obs[t], obs[t + 1]). ``terminateds`` are Minari's terminations;
``truncateds`` are its truncations, and the last step of an episode that neither
terminated nor was truncated (the data ended) counts as truncated too. Dict observations
are flattened by concatenating the task's ``minari_obs_keys`` in order (AntMaze:
achieved_goal then observation, D4RL's 29-dim layout).

The dataset's evaluation env (metadata's ``eval_env_spec``, else ``env_spec``) goes into
the source record as ``eval_env`` (see ``diffcps_ray.envs.recorded``), which write_shards
stores as the manifest's ``eval_env``: Minari's D4RL AntMaze ports were recorded in
gymnasium-robotics' AntMaze (other physics and frame than D4RL's), so a policy trained on
them is evaluated there, not in the task's D4RL-matching simulator.

The datasets are read from MINARI_DATASETS_PATH (default ~/.minari/datasets) and never
downloaded; DATASET_ID may also be a dataset directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diffcps_ray.data.shards import sha256_file
from diffcps_ray.envs.tasks import TaskSpec, get_task
from diffcps_ray.errors import DataError


def _open(dataset_id: str) -> tuple[Any, Path]:
    """The MinariDataset for an id (or a directory), and its data directory."""
    import minari
    from minari.storage import get_dataset_path

    as_path = Path(dataset_id).expanduser()
    if as_path.is_dir():
        data_dir = as_path / "data" if (as_path / "data").is_dir() else as_path
    else:
        data_dir = Path(get_dataset_path(dataset_id)) / "data"
    if not (data_dir / "metadata.json").is_file():
        root = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise DataError(
            f"Minari dataset {dataset_id!r} is not in {root} (no {data_dir}/metadata.json); "
            f"download it elsewhere with `minari download {dataset_id}` and copy it there, "
            f"or set MINARI_DATASETS_PATH."
        )
    try:
        return minari.MinariDataset(data_dir), data_dir
    except (OSError, ValueError, KeyError, AssertionError) as error:
        raise DataError(
            f"Minari dataset {dataset_id!r} in {data_dir} could not be read ({error})."
        ) from None


def flatten_observations(
    observations: np.ndarray | Mapping[str, Any], spec: TaskSpec, where: str
) -> np.ndarray:
    """A flat (T + 1, obs_dim) array from Minari's observations (array or dict)."""
    if not isinstance(observations, Mapping):
        return np.asarray(observations)
    keys = spec.minari_obs_keys
    if not keys:
        raise DataError(
            f"{where}: observations are a dict with keys {sorted(observations)}, and task "
            f"{spec.name!r} defines no way to flatten them."
        )
    missing = [key for key in keys if key not in observations]
    if missing:
        raise DataError(
            f"{where}: key 'observations/{missing[0]}' is missing (it has {sorted(observations)})."
        )
    parts = [np.asarray(observations[key]) for key in keys]
    lengths = {len(part) for part in parts}
    if len(lengths) != 1:
        raise DataError(f"{where}: the keys {keys} of 'observations' differ in length.")
    return np.concatenate([part.reshape(len(part), -1) for part in parts], axis=1)


def _episode_columns(episode: Any, spec: TaskSpec, where: str) -> dict[str, np.ndarray]:
    observations = flatten_observations(episode.observations, spec, where)
    actions = np.asarray(episode.actions)
    rewards = np.asarray(episode.rewards)
    terminations = np.asarray(episode.terminations)
    truncations = np.asarray(episode.truncations)
    steps = len(rewards)
    if steps == 0:
        raise DataError(f"{where}: key 'rewards' is empty.")
    expected = {
        "observations": (steps + 1, spec.obs_dim),
        "actions": (steps, spec.act_dim),
        "rewards": (steps,),
        "terminations": (steps,),
        "truncations": (steps,),
    }
    found = {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "terminations": terminations,
        "truncations": truncations,
    }
    for key, shape in expected.items():
        array = found[key]
        if array.shape != shape:
            raise DataError(
                f"{where}: key {key!r} has shape {array.shape}, but task {spec.name!r} with "
                f"{steps} steps needs {shape}."
            )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            row = int(np.argwhere(~np.isfinite(array))[0][0])
            raise DataError(f"{where}: key {key!r} holds NaN or inf (first at step {row}).")
    terminateds = terminations != 0
    truncateds = truncations != 0
    if not terminateds[-1]:
        truncateds = truncateds.copy()
        truncateds[-1] = True  # the episode ends here without a terminal state
    return {
        "obs": observations[:-1].astype(np.float32, copy=False),
        "actions": actions.astype(np.float32, copy=False),
        "rewards": rewards.astype(np.float32, copy=False),
        "new_obs": observations[1:].astype(np.float32, copy=False),
        "terminateds": terminateds,
        "truncateds": truncateds,
        "t": np.arange(steps, dtype=np.int64),
    }


def eval_env_record(
    metadata: Mapping[str, Any], observation_space: Any, spec: TaskSpec, where: str
) -> dict[str, Any] | None:
    """The manifest record of a dataset's evaluation env, or None if it names none.

    Dict observations are flattened with the task's ``minari_obs_keys`` (the converter's
    own order), so evaluation observations match the data's columns.
    """
    from gymnasium import spaces

    from diffcps_ray.envs.recorded import record_from_env_spec_json

    spec_json = metadata.get("eval_env_spec") or metadata.get("env_spec")
    if not spec_json:
        return None
    obs_keys = spec.minari_obs_keys if isinstance(observation_space, spaces.Dict) else ()
    try:
        return record_from_env_spec_json(spec_json, obs_keys).to_record()
    except DataError as error:
        raise DataError(f"{where}: {error}") from None
    except (ValueError, TypeError) as error:  # json's decode errors are ValueErrors
        raise DataError(f"{where}: its evaluation env spec is not valid JSON ({error}).") from None


def load_minari(dataset_id: str, task: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Transitions of a local Minari dataset for ``task`` and the manifest's source record."""
    spec = get_task(task)
    dataset, data_dir = _open(dataset_id)
    columns: dict[str, list[np.ndarray]] = {}
    num_episodes = 0
    try:
        for episode in dataset.iterate_episodes():
            where = f"Minari dataset {dataset_id!r} episode {episode.id}"
            for name, values in _episode_columns(episode, spec, where).items():
                columns.setdefault(name, []).append(values)
            columns.setdefault("eps_id", []).append(
                np.full(len(episode.rewards), num_episodes, dtype=np.int64)
            )
            num_episodes += 1
    except (OSError, KeyError) as error:
        raise DataError(
            f"Minari dataset {dataset_id!r} in {data_dir} could not be read ({error}); the "
            f"file may be truncated."
        ) from None
    if num_episodes == 0:
        raise DataError(f"Minari dataset {dataset_id!r} in {data_dir} holds no episodes.")
    transitions = {name: np.concatenate(parts) for name, parts in columns.items()}
    metadata = dataset.storage.metadata
    data_file = data_dir / "main_data.hdf5"
    source = {
        "kind": "minari",
        "dataset_id": str(metadata.get("dataset_id", dataset_id)),
        "file": str(data_file.resolve()) if data_file.is_file() else str(data_dir.resolve()),
        "sha256": sha256_file(data_file) if data_file.is_file() else None,
        "episodes_in_file": num_episodes,
        # Minari's own reference scores, if any; the manifest's come from the task.
        "minari_ref_min_score": metadata.get("ref_min_score"),
        "minari_ref_max_score": metadata.get("ref_max_score"),
        "eval_env": eval_env_record(
            metadata, dataset.observation_space, spec, f"Minari dataset {dataset_id!r}"
        ),
    }
    return transitions, source
