"""Ray Data reads of converted shards give exactly the reference transitions.

One Ray session for all of them (the shared ``ray_session`` fixture); each format is
converted by the CLI, read with ``read_dataset`` and materialised as the learner does.
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.data import shards
from diffcps_ray.data.__main__ import main
from diffcps_ray.errors import DataError
from tests.test_data_formats import (
    antmaze_episodes,
    assert_same_rows,
    hopper_episodes,
    read_hdf5_plain,
    reference_minari,
    reference_qlearning,
    sort_rows,
    write_d4rl_antmaze,
    write_d4rl_locomotion,
    write_minari,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Three tasks converted from D4RL Hopper, D4RL AntMaze and Minari AntMaze files."""
    root = tmp_path_factory.mktemp("ray_data")
    out = root / "data"
    expected = {}

    hopper = write_d4rl_locomotion(root / "hopper.hdf5", hopper_episodes())
    argv = ["convert", "--d4rl", str(hopper), "--task", "hopper-medium-v2", "--out", str(out)]
    assert run_main(main, [*argv, "--rows-per-shard", "128"]) == 0
    expected["hopper-medium-v2"] = reference_qlearning(read_hdf5_plain(hopper), 1000)

    antmaze = write_d4rl_antmaze(root / "antmaze.hdf5", antmaze_episodes())
    argv = ["convert", "--d4rl", str(antmaze), "--task", "antmaze-umaze-v2", "--out", str(out)]
    assert run_main(main, [*argv, "--rows-per-shard", "500"]) == 0
    expected["antmaze-umaze-v2"] = reference_qlearning(read_hdf5_plain(antmaze), 700)

    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patch.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        write_minari("test/antmaze/umaze-v1", antmaze_episodes(), dict_observations=True)
        argv = ["convert", "--minari", "test/antmaze/umaze-v1", "--task", "antmaze-umaze-v0"]
        assert run_main(main, [*argv, "--out", str(out)]) == 0
    expected["antmaze-umaze-v0"] = reference_minari(antmaze_episodes())
    return out, expected


@pytest.mark.parametrize("task", ["hopper-medium-v2", "antmaze-umaze-v2", "antmaze-umaze-v0"])
def test_ray_read_equals_reference(ray_session, converted, task):
    out, expected = converted
    dataset = shards.read_dataset(shards.task_dir(out, task))
    tensors = shards.materialize(dataset)
    got = sort_rows({k: v.numpy() for k, v in tensors.items()})
    assert_same_rows(got, expected[task])
    # And the pure-pyarrow path agrees, in file order.
    assert_same_rows(shards.load_transitions(out / task), expected[task])


def test_streaming_split_shares_cover_the_data_once(ray_session, converted):
    out, expected = converted
    dataset = shards.read_dataset(out / "hopper-medium-v2")
    # Split iterators must be consumed concurrently (one per learner), as RLlib does.
    # equal=True as the learners use it: Ray Data may pack small shards into one block,
    # and an unequal split could then hand one learner nothing.
    splits = dataset.streaming_split(2, equal=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(shards.materialize, it) for it in splits]
        parts = [future.result(timeout=60) for future in futures]
    rows = sum(len(p["rewards"]) for p in parts)
    total = len(expected["hopper-medium-v2"]["rewards"])
    # Equal shares drop at most one row of an odd total.
    assert len(parts[0]["rewards"]) == len(parts[1]["rewards"])
    assert total - 1 <= rows <= total
    keys = np.concatenate([p["eps_id"].numpy() * 10_000 + p["t"].numpy() for p in parts])
    assert len(np.unique(keys)) == rows
    # Torch batches work too: no string partition column sneaks in.
    batch = next(iter(dataset.iter_torch_batches(batch_size=16)))
    assert tuple(batch["obs"].shape) == (16, 11)


def test_ray_read_refuses_a_changed_shard(ray_session, converted, tmp_path):
    out, _ = converted
    copy = tmp_path / "antmaze-umaze-v2"
    copy.mkdir()
    for item in (out / "antmaze-umaze-v2").iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][1]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"part-00001\.parquet does not match its manifest"):
        shards.read_dataset(copy)
