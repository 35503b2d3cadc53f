"""The shard writer and the verified readers (pure pyarrow; Ray in test_data_ray.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from diffcps_ray.data import shards
from diffcps_ray.data.schema import COLUMNS, arrow_schema
from diffcps_ray.errors import DataError, MissingDataError, UnknownTaskError
from tests.test_data_formats import assert_same_rows, leftovers

TASK = "hopper-medium-v2"


def _transitions(rows: int = 1000, obs_dim: int = 11, act_dim: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    eps_id = np.repeat(np.arange(rows // 100 + 1), 100)[:rows]
    return {
        "obs": rng.normal(size=(rows, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=rows),  # float64 in, float32 on disk
        "new_obs": rng.normal(size=(rows, obs_dim)).astype(np.float32),
        "terminateds": rng.random(rows) < 0.05,
        "truncateds": np.zeros(rows, dtype=bool),
        "eps_id": eps_id,
        "t": np.arange(rows) % 100,
    }


def test_write_then_load_round_trip(tmp_path):
    data = _transitions()
    path = shards.write_shards(data, TASK, tmp_path, "generated", rows_per_shard=300)
    assert path == tmp_path / TASK
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        *(f"part-0000{i}.parquet" for i in range(4)),
    ]
    got = shards.load_transitions(path)
    assert_same_rows(got, {k: np.asarray(v) for k, v in data.items()})
    assert got["obs"].dtype == np.float32 and got["rewards"].dtype == np.float32
    assert got["terminateds"].dtype == np.bool_ and got["eps_id"].dtype == np.int64

    manifest = shards.read_manifest(path)
    assert [s.rows for s in manifest.shards] == [300, 300, 300, 100]
    assert manifest.num_rows == 1000 and manifest.num_episodes == 10
    assert manifest.source == {"kind": "generated"}


def test_shards_use_fixed_size_lists_and_zstd(tmp_path):
    path = shards.write_shards(_transitions(50), TASK, tmp_path, "generated")
    parquet = pq.ParquetFile(path / "part-00000.parquet")
    assert parquet.schema_arrow.equals(arrow_schema(11, 3))
    assert pa.types.is_fixed_size_list(parquet.schema_arrow.field("obs").type)
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    assert list(parquet.schema_arrow.names) == list(COLUMNS)  # no partition columns


def test_materialize_makes_float_and_int_tensors(tmp_path):
    data = _transitions(250)
    path = shards.write_shards(data, TASK, tmp_path, "generated", rows_per_shard=100)
    tables = [pq.read_table(p) for p in shards.shard_paths(path)]
    tensors = shards.materialize(tables)
    assert tensors["obs"].shape == (250, 11) and tensors["obs"].dtype == torch.float32
    assert tensors["terminateds"].dtype == torch.float32
    assert tensors["eps_id"].dtype == torch.int64
    assert torch.equal(tensors["terminateds"], torch.from_numpy(data["terminateds"]).float())
    # dict-of-numpy batches (Ray's "numpy" format gives object arrays for list columns)
    numpy_batches = [
        {k: (np.array(list(v), dtype=object) if v.ndim == 2 else v) for k, v in data.items()}
    ]
    again = shards.materialize(numpy_batches)
    assert torch.equal(again["new_obs"], tensors["new_obs"])


def test_nan_is_refused_before_anything_is_written(tmp_path):
    data = _transitions(100)
    data["new_obs"][3, 2] = np.nan
    with pytest.raises(DataError, match=r"'new_obs' holds NaN or inf \(first at row 3\)"):
        shards.write_shards(data, TASK, tmp_path / "root", "generated")
    assert leftovers(tmp_path / "root") == []


def test_wrong_dims_and_missing_column_are_refused(tmp_path):
    with pytest.raises(DataError, match="'obs' has shape"):
        shards.write_shards(_transitions(100, obs_dim=17), TASK, tmp_path, "generated")
    data = _transitions(100)
    del data["eps_id"]
    with pytest.raises(DataError, match="missing the column 'eps_id'"):
        shards.write_shards(data, TASK, tmp_path, "generated")
    with pytest.raises(UnknownTaskError):
        shards.write_shards(_transitions(100), "hoper-medium-v2", tmp_path, "generated")
    assert leftovers(tmp_path) == []


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shards.pq, "write_table", broken)
    with pytest.raises(DataError, match="No space left on device"):
        shards.write_shards(_transitions(100), TASK, tmp_path, "generated")
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_in_place(tmp_path):
    shards.write_shards(_transitions(100, seed=1), TASK, tmp_path, "generated")
    with pytest.raises(DataError, match="already exists"):
        shards.write_shards(_transitions(100, seed=2), TASK, tmp_path, "generated")
    shards.write_shards(_transitions(200, seed=2), TASK, tmp_path, "generated", overwrite=True)
    assert shards.read_manifest(tmp_path / TASK).num_rows == 200
    assert leftovers(tmp_path) == [TASK, f"{TASK}/manifest.json", f"{TASK}/part-00000.parquet"]


def test_changed_or_truncated_shard_is_refused(tmp_path):
    path = shards.write_shards(_transitions(), TASK, tmp_path, "generated", rows_per_shard=400)
    shard = path / "part-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 10])
    with pytest.raises(
        DataError, match=r"part-00001\.parquet does not match its manifest checksum"
    ):
        shards.load_transitions(path)
    with pytest.raises(DataError, match=r"part-00001\.parquet"):
        shards.shard_paths(path)


def test_shard_with_other_schema_is_refused(tmp_path):
    path = shards.write_shards(_transitions(), TASK, tmp_path, "generated", rows_per_shard=600)
    # A shard written for other dims, with a manifest checksum that agrees with it.
    other = shards.write_shards(
        _transitions(600, obs_dim=17, act_dim=6), "walker2d-medium-v2", tmp_path, "generated"
    )
    (path / "part-00000.parquet").write_bytes((other / "part-00000.parquet").read_bytes())
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = shards.sha256_file(path / "part-00000.parquet")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        DataError, match=r"part-00000\.parquet does not match its manifest: column 'obs'"
    ):
        shards.load_transitions(path)


def test_missing_task_directory_says_how_to_make_it(tmp_path):
    with pytest.raises(MissingDataError, match="generate --task pointmaze-umaze"):
        shards.task_dir(tmp_path, "pointmaze-umaze")
    with pytest.raises(MissingDataError, match=r"convert --d4rl .*hopper_medium-v2\.hdf5"):
        shards.task_dir(tmp_path, TASK)
    with pytest.raises(MissingDataError, match=r"manifest\.json does not exist"):
        shards.load_transitions(tmp_path / TASK)


def test_other_format_version_is_refused(tmp_path):
    path = shards.write_shards(_transitions(100), TASK, tmp_path, "generated")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="format version 99"):
        shards.read_manifest(path)


def test_staging_left_by_a_killed_writer_is_cleaned_up(tmp_path):
    dead = tmp_path / f".{TASK}.tmp-999999999-abcdef12"  # no such pid
    dead.mkdir()
    (dead / "part-00000.parquet").write_bytes(b"half")
    shards.write_shards(_transitions(100), TASK, tmp_path, "generated")
    assert sorted(p.name for p in tmp_path.iterdir()) == [TASK]


def test_source_record_accepts_numpy_scalars_and_paths(tmp_path):
    source = {"kind": "generated", "seed": np.int64(3), "file": tmp_path / "x.hdf5"}
    shards.write_shards(_transitions(100), TASK, tmp_path, source)
    recorded = shards.read_manifest(tmp_path / TASK).source
    assert recorded == {"kind": "generated", "seed": 3, "file": str(tmp_path / "x.hdf5")}
