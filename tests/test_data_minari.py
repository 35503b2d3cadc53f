"""Minari conversion: real datasets made with minari.create_dataset_from_buffers in a
MINARI_DATASETS_PATH under tmp_path, read back locally through the minari package."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.data.__main__ import main
from diffcps_ray.data.shards import load_transitions, read_manifest
from tests.test_data_formats import (
    antmaze_episodes,
    assert_same_rows,
    hopper_episodes,
    leftovers,
    reference_minari,
    the_error,
    write_minari,
)


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari nags about eval_env and env_spec
        yield root


def _convert(dataset_id, task, out) -> int:
    return run_main(main, ["convert", "--minari", dataset_id, "--task", task, "--out", str(out)])


def test_box_observations_round_trip(minari_root, tmp_path):
    episodes = hopper_episodes()
    write_minari("test/hopper/random-v0", episodes)
    assert _convert("test/hopper/random-v0", "hopper-medium-v2", tmp_path / "data") == 0

    got = load_transitions(tmp_path / "data" / "hopper-medium-v2")
    assert_same_rows(got, reference_minari(episodes))
    assert np.array_equal(
        got["eps_id"], np.repeat(np.arange(len(episodes)), [len(e["rewards"]) for e in episodes])
    )
    source = read_manifest(tmp_path / "data" / "hopper-medium-v2").source
    assert source["kind"] == "minari" and source["dataset_id"] == "test/hopper/random-v0"
    assert len(source["sha256"]) == 64


def test_dict_observations_flatten_to_d4rl_antmaze_layout(minari_root, tmp_path):
    episodes = antmaze_episodes()
    write_minari("test/antmaze/umaze-v1", episodes, dict_observations=True)
    assert _convert("test/antmaze/umaze-v1", "antmaze-umaze-v2", tmp_path / "data") == 0

    got = load_transitions(tmp_path / "data" / "antmaze-umaze-v2")
    # concat(achieved_goal, observation) gives back the 29-dim D4RL observation.
    assert_same_rows(got, reference_minari(episodes))
    assert got["obs"].shape[1] == 29


def test_dataset_directory_path_is_accepted(minari_root, tmp_path):
    write_minari("test/hopper/random-v0", hopper_episodes())
    directory = minari_root / "test" / "hopper" / "random-v0"
    assert _convert(str(directory), "hopper-medium-v2", tmp_path / "data") == 0


def test_missing_dataset_names_id_and_writes_nothing(minari_root, tmp_path, capsys):
    assert _convert("D4RL/antmaze/umaze-v1", "antmaze-umaze-v2", tmp_path / "data") == 2
    err = the_error(capsys.readouterr().err)
    assert "D4RL/antmaze/umaze-v1" in err
    assert leftovers(tmp_path / "data") == []


def test_wrong_dims_for_task_names_key_and_writes_nothing(minari_root, tmp_path, capsys):
    write_minari("test/hopper/random-v0", hopper_episodes())
    assert _convert("test/hopper/random-v0", "walker2d-medium-v2", tmp_path / "data") == 2
    err = the_error(capsys.readouterr().err)
    assert "test/hopper/random-v0" in err and "'observations'" in err and "walker2d" in err
    assert leftovers(tmp_path / "data") == []


def test_dict_observations_without_flattening_rule_are_refused(minari_root, tmp_path, capsys):
    write_minari("test/antmaze/umaze-v1", antmaze_episodes(), dict_observations=True)
    # Hopper tasks define no minari_obs_keys, so a dict observation cannot be flattened.
    assert _convert("test/antmaze/umaze-v1", "hopper-medium-v2", tmp_path / "data") == 2
    err = the_error(capsys.readouterr().err)
    assert "'observations'" in err or "observations are a dict" in err
    assert leftovers(tmp_path / "data") == []
