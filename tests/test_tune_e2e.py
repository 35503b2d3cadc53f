"""The real DiffCPS trainable under the sweep: the command line end to end, and a worker
killed mid-run resuming from its real RLlib checkpoint. Tiny budgets (a few gradient
steps, one or two evaluation episodes): these check wiring, not learning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffcps_ray.tune.sweep import Sweep
from tests.test_tune_support import KillOnceTrial, make_data, tiny_options, tiny_suite

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _tune(*args: str, timeout: int = 420) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "diffcps_ray.tune", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_smoke_sweep_from_the_command_line(tmp_path: Path) -> None:
    # Storage as a URI, as for s3:// or gs:// on a cluster: Tune and the manifest go
    # through pyarrow's filesystem, not local paths (other tests cover plain directories).
    storage = (tmp_path / "runs").as_uri()
    args = ["--suite", "pointmaze", "--budget", "smoke", "--data-root", str(tmp_path / "data"),
            "--storage", storage, "--name", "smoke", "--num-samples", "2", "--seeds", "1",
            # One task keeps this within its time limit on a shared 2-core machine.
            "--tasks", "pointmaze-umaze"]
    done = _tune(*args)
    assert done.returncode == 0, done.stderr[-4000:]
    # Data were generated with progress shown; Tune's reporter showed our columns.
    assert "Generating 20,000 transitions for pointmaze-umaze" in done.stdout
    assert "pointmaze-medium" not in done.stdout
    assert "lambda_clip" in done.stdout and "kappa" in done.stdout and "score" in done.stdout
    assert "final normalised score" in done.stdout
    manifest = json.loads((tmp_path / "runs" / "smoke" / "experiment.json").read_text())
    assert [t["phase"] for t in manifest["trials"]].count("search") == 2
    assert [t["phase"] for t in manifest["trials"]].count("confirm") == 1
    for row in manifest["trials"]:
        assert row["status"] in ("TERMINATED", "STOPPED_EARLY"), row
        assert row["score"] is not None
    # TensorBoard files only with --logger tensorboard (tests/test_tune_reporting.py).
    assert not list((tmp_path / "runs" / "smoke").glob("*/*/events.out.tfevents.*"))
    # Resuming a finished sweep re-uses its recorded options and runs nothing new.
    again = _tune("--storage", storage, "--name", "smoke", "--resume")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "finished earlier; nothing to run" in again.stdout


def test_killed_worker_resumes_the_real_algorithm_from_its_checkpoint(
    ray_session, tmp_path: Path
) -> None:
    data_root = make_data(tmp_path / "data")
    trainable = type("KillAtTwo", (KillOnceTrial,),
                     {"kill_at": 2, "marker": str(tmp_path / "killed")})
    opts = tiny_options(tmp_path, data_root, num_samples=1, seeds=1)
    manifest = Sweep(tiny_suite(iterations=3, steps=5), opts, "test", resume=False,
                     trainable=trainable).run().to_dict()
    assert (tmp_path / "killed").exists()
    experiment = tmp_path / "runs" / "exp"
    for row in manifest["trials"]:
        lines = [json.loads(x) for x in
                 (experiment / row["path"] / "result.json").read_text().splitlines()]
        assert [x["training_iteration"] for x in lines] == [1, 2, 3]
        # The learner's step counter came back from the checkpoint: 3 x 5 steps in all.
        assert lines[-1]["num_gradient_steps"] == 15
    killed = next(row for row in manifest["trials"] if row["phase"] == "search")
    assert killed["status"] == "TERMINATED"
