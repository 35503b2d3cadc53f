"""D4RL HDF5 conversion: real Hopper/AntMaze rollouts in D4RL's file layouts, converted by
the CLI and compared with a plain d4rl.qlearning_dataset computation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.data.__main__ import main
from diffcps_ray.data.d4rl import count_timeouts, qlearning_transitions
from diffcps_ray.data.shards import load_transitions, read_manifest
from tests.test_data_formats import (
    antmaze_episodes,
    assert_same_rows,
    hopper_episodes,
    read_hdf5_plain,
    reference_qlearning,
    write_d4rl_antmaze,
    write_d4rl_locomotion,
)


def _convert(path, task, out) -> int:
    return run_main(main, ["convert", "--d4rl", str(path), "--task", task, "--out", str(out)])


def _expected_episode_columns(episodes) -> dict[str, np.ndarray]:
    """eps_id, t, truncateds of the rows qlearning_dataset keeps, from the episode list."""
    eps_id, t, truncateds = [], [], []
    total = sum(len(e["rewards"]) for e in episodes)
    row = 0
    for index, episode in enumerate(episodes):
        steps = len(episode["rewards"])
        kept = [
            s
            for s in range(steps)
            if not episode["truncations"][s] and row + s != total - 1  # timeouts, last row
        ]
        for position, s in enumerate(kept):
            eps_id.append(index)
            t.append(s)
            last = position == len(kept) - 1
            truncateds.append(last and not episode["terminations"][s])
        row += steps
    return {"eps_id": np.array(eps_id), "t": np.array(t), "truncateds": np.array(truncateds)}


def test_hopper_v2_file_converts_to_qlearning_rows(tmp_path, capsys):
    episodes = hopper_episodes()
    path = write_d4rl_locomotion(tmp_path / "hopper_medium-v2.hdf5", episodes)
    assert _convert(path, "hopper-medium-v2", tmp_path / "data") == 0

    task_dir = tmp_path / "data" / "hopper-medium-v2"
    got = load_transitions(task_dir)
    assert_same_rows(got, reference_qlearning(read_hdf5_plain(path), 1000))
    # Terminals and timeouts stay apart: falls are terminateds, time limits truncateds.
    assert_same_rows(got, _expected_episode_columns(episodes))
    assert got["terminateds"].sum() == sum(bool(e["terminations"][-1]) for e in episodes[:-1])
    assert not (got["terminateds"] & got["truncateds"]).any()

    manifest = read_manifest(task_dir)
    assert (manifest.obs_dim, manifest.act_dim) == (11, 3)
    assert (manifest.ref_min_score, manifest.ref_max_score) == (-20.272305, 3234.3)
    assert manifest.num_episodes == len(episodes)
    assert manifest.source["kind"] == "d4rl" and len(manifest.source["sha256"]) == 64
    assert "wrote" in capsys.readouterr().err


def test_column_vector_rewards_and_terminals_are_squeezed(tmp_path):
    episodes = hopper_episodes()
    flat = write_d4rl_locomotion(tmp_path / "flat.hdf5", episodes)
    column = write_d4rl_locomotion(tmp_path / "column.hdf5", episodes, column_vectors=True)
    assert _convert(flat, "hopper-medium-v2", tmp_path / "a") == 0
    assert _convert(column, "hopper-medium-v2", tmp_path / "b") == 0
    a = load_transitions(tmp_path / "a" / "hopper-medium-v2")
    b = load_transitions(tmp_path / "b" / "hopper-medium-v2")
    assert_same_rows(b, a)


def test_antmaze_file_without_next_observations(tmp_path):
    episodes = antmaze_episodes()
    path = write_d4rl_antmaze(tmp_path / "antmaze.hdf5", episodes)
    assert _convert(path, "antmaze-umaze-v2", tmp_path / "data") == 0

    got = load_transitions(tmp_path / "data" / "antmaze-umaze-v2")
    assert_same_rows(got, reference_qlearning(read_hdf5_plain(path), 700))
    # Relabelled terminals occur mid-episode and do not split episodes.
    assert got["terminateds"].any()
    assert len(np.unique(got["eps_id"])) == len(episodes)
    assert_same_rows(got, _expected_episode_columns(episodes))


def test_file_without_timeouts_is_cut_by_max_episode_steps(tmp_path):
    # antmaze-umaze-v0 episodes last 700 steps; no timeouts key, as in old D4RL files.
    episodes = antmaze_episodes()
    path = write_d4rl_antmaze(tmp_path / "antmaze_v0.hdf5", episodes, timeouts=False)
    assert _convert(path, "antmaze-umaze-v0", tmp_path / "data") == 0

    got = load_transitions(tmp_path / "data" / "antmaze-umaze-v0")
    assert_same_rows(got, reference_qlearning(read_hdf5_plain(path), 700))
    source = read_manifest(tmp_path / "data" / "antmaze-umaze-v0").source
    assert source["has_timeouts"] is False


@pytest.mark.parametrize("max_steps", [2, 7, 25, 80])
def test_counted_timeouts_follow_d4rl_counter(max_steps):
    """D4RL's counter restarts at 1 after a terminal; falls land anywhere relative to it."""
    episodes = hopper_episodes()
    arrays = {
        "observations": np.concatenate([e["observations"][:-1] for e in episodes]),
        "actions": np.concatenate([e["actions"] for e in episodes]),
        "rewards": np.concatenate([e["rewards"] for e in episodes]).astype(np.float32),
        "terminals": np.concatenate([e["terminations"] for e in episodes]),
    }
    got = qlearning_transitions(arrays, max_steps, terminals_end_episodes=True)
    assert_same_rows(got, reference_qlearning(arrays, max_steps))
    inferred = count_timeouts(arrays["terminals"], max_steps)
    assert len(got["rewards"]) == len(arrays["rewards"]) - 1 - inferred[:-1].sum()


def test_manifest_is_json_with_per_shard_checksums(tmp_path):
    path = write_d4rl_locomotion(tmp_path / "h.hdf5", hopper_episodes())
    argv = ["convert", "--d4rl", str(path), "--task", "hopper-medium-v2"]
    assert run_main(main, [*argv, "--out", str(tmp_path), "--rows-per-shard", "100"]) == 0
    raw = json.loads((tmp_path / "hopper-medium-v2" / "manifest.json").read_text())
    assert raw["format_version"] == 1 and raw["compression"] == "zstd"
    assert len(raw["shards"]) > 1 and all(len(s["sha256"]) == 64 for s in raw["shards"])
    assert sum(s["rows"] for s in raw["shards"]) == raw["num_rows"]
