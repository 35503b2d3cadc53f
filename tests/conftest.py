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
