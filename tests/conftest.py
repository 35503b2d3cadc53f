"""Shared fixtures. Several areas add fixtures here: add with small edits, keep sections."""

from __future__ import annotations

import os

import pytest

# Before torch or Ray start anything: one thread per process (2-core machines).
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every test that needs Ray (starting Ray costs seconds).

    Four logical CPUs on a 2-core machine leaves room for Ray Data tasks beside an
    Algorithm and its evaluation, which deadlocks with ``num_cpus=2`` (docs/performance.md).
    """
    import ray

    if not ray.is_initialized():
        ray.init(
            # Always a private instance: never attach to a cluster a parallel run started.
            address="local",
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}},
        )
    yield ray
    ray.shutdown()


# --- trained policies (tests/test_policy.py, tests/test_evaluate_cli.py) ---------------------

POLICY_TASK = "pointmaze-umaze"


def _command(*args: str, timeout: int = 600):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    """A 2-iteration ``python -m diffcps_ray.train`` run whose data directory is deleted."""
    import shutil

    from diffcps_ray.data.generate import generate_dataset
    from diffcps_ray.data.shards import write_shards

    base = tmp_path_factory.mktemp("trained")
    data_root = base / "data"
    write_shards(generate_dataset(POLICY_TASK, 600, seed=1), POLICY_TASK, data_root,
                 "generated")
    out = base / "run"
    _command("diffcps_ray.train", "--task", POLICY_TASK, "--data-root", str(data_root),
             "--out", str(out), "--iterations", "2", "--quiet",
             "--set", "gradient_steps_per_iteration=20", "--set", "batch_size=16",
             "--set", "eval_interval=2", "--set", "eval_episodes=2")  # fmt: skip
    shutil.rmtree(data_root)  # policies must load and act without the dataset
    return out


@pytest.fixture(scope="session")
def smoke_sweep_run(tmp_path_factory: pytest.TempPathFactory):
    """The pointmaze smoke sweep, run once per session: (the finished command, its
    experiment directory). Two seeds, whose scores differ; with --logger tensorboard, whose
    event files tests/test_tune_reporting.py reads; its data directory is deleted, as
    policies must load and act without it. Tests that change the directory copy it first."""
    import shutil

    base = tmp_path_factory.mktemp("sweep")
    done = _command("diffcps_ray.tune", "--suite", "pointmaze", "--budget", "smoke",
                    "--data-root", str(base / "data"), "--storage", str(base / "runs"),
                    "--name", "smoke", "--seeds", "2", "--tasks", "pointmaze-umaze",
                    "--logger", "tensorboard", timeout=900)  # fmt: skip
    shutil.rmtree(base / "data")
    return done, base / "runs" / "smoke"


@pytest.fixture(scope="session")
def smoke_sweep(smoke_sweep_run):
    """The pointmaze smoke sweep's experiment directory (see ``smoke_sweep_run``)."""
    return smoke_sweep_run[1]
