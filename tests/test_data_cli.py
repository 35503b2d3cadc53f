"""`python -m diffcps_ray.data generate` and `inspect`, in process and once as a module."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.data.__main__ import main
from diffcps_ray.data.generate import GENERATOR_VERSION
from diffcps_ray.data.shards import load_transitions, read_manifest
from diffcps_ray.tune.suites import load_suite
from tests.test_data_formats import the_error

POINTMAZE_SUITE_TASKS = list(load_suite("pointmaze").tasks)


@pytest.mark.parametrize("task", POINTMAZE_SUITE_TASKS)
def test_generate_writes_shards_with_progress(tmp_path, capsys, task):
    argv = ["generate", "--task", task, "--out", str(tmp_path), "--steps", "1500"]
    assert run_main(main, [*argv, "--seed", "3", "--rows-per-shard", "1000"]) == 0
    err = capsys.readouterr().err
    assert "1500/1500 transitions" in err and "wrote 1500 transitions" in err

    manifest = read_manifest(tmp_path / task)
    assert manifest.task == task
    assert manifest.source == {
        "kind": "generated", "seed": 3, "steps": 1500, "generator_version": GENERATOR_VERSION
    }
    assert [s.rows for s in manifest.shards] == [1000, 500]
    data = load_transitions(tmp_path / task)
    assert data["obs"].shape == (1500, 6) and np.isfinite(data["obs"]).all()

    # Same seed, same data; an existing target needs --overwrite.
    assert run_main(main, [*argv, "--seed", "3"]) == 2
    assert "--overwrite" in the_error(capsys.readouterr().err)


def test_inspect_prints_rows_episodes_returns_dims_and_scores(tmp_path, capsys):
    argv = ["generate", "--task", "pointmaze-umaze", "--out", str(tmp_path), "--steps", "1200"]
    assert run_main(main, argv) == 0
    capsys.readouterr()
    task_dir = tmp_path / "pointmaze-umaze"

    assert run_main(main, ["inspect", str(task_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = load_transitions(task_dir)
    returns = [data["rewards"][data["eps_id"] == e].sum() for e in np.unique(data["eps_id"])]
    assert summary["rows"] == 1200 and summary["episodes"] == len(returns)
    assert np.isclose(summary["return_mean"], np.mean(returns), rtol=1e-5)
    assert (summary["obs_dim"], summary["act_dim"]) == (6, 2)

    assert run_main(main, ["inspect", str(task_dir)]) == 0
    text = capsys.readouterr().out
    for word in ("rows", "episodes", "returns", "dims", "reference", "1,200"):
        assert word in text


def test_module_entry_point_reports_missing_data(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "diffcps_ray.data", "inspect", str(tmp_path / "hopper-medium-v2")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    line = the_error(result.stderr)
    assert "convert --d4rl" in line and "generate --task hopper-medium-v2" in line


def test_inspect_refuses_a_changed_shard(tmp_path, capsys):
    argv = ["generate", "--task", "pointmaze-umaze", "--out", str(tmp_path), "--steps", "500"]
    assert run_main(main, argv) == 0
    shard = tmp_path / "pointmaze-umaze" / "part-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    capsys.readouterr()
    assert run_main(main, ["inspect", str(tmp_path / "pointmaze-umaze")]) == 2
    assert "part-00000.parquet does not match its manifest" in the_error(capsys.readouterr().err)
