"""Starting (or joining) Ray for a sweep, and sizing what runs on it.

- ``start_ray``: a private local instance with logical CPUs to spare for Ray Data, or the
  cluster at ``--address``; quiet start-up settings for both.
- ``concurrency`` / ``Resources``: how many trials fit at once, and what each asks;
  ``GpuWait``: the lines a sweep prints while trials wait for GPU nodes to join.
- ``tune_environment``: the Tune settings of the driver, set for the duration of a fit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from diffcps_ray.errors import DiffCPSError, first_line

# docs/performance.md: about 2.3-2.6 GB of RAM per DiffCPS Algorithm across Ray's processes.
MEMORY_PER_TRIAL = 2.6e9
# Tune lets a custom searcher have one pending trial at a time, so a cluster would fill one
# placement group after another; the plan's own trial limit bounds live trials instead.
MAX_PENDING_TRIALS = 1000

# Ray Data's V2 Parquet reader lists files with a pool of footer-reading actors, 32 by
# default, one worker process each: for a task's few shards that made Ray start workers
# faster than its start-up concurrency and warn ("N PYTHON worker processes have been
# started"). Two read a task's footers as fast.
PARQUET_FOOTER_ACTORS = 2


class RayStartError(DiffCPSError):
    """Ray could not be started or joined."""


@dataclass(frozen=True)
class Resources:
    """What the sweep's trials ask for and what it keeps free (from the sweep's options)."""

    cpus_per_trial: float
    gpus_per_trial: float
    data_cpus: float  # logical CPUs kept free of trials for Ray Data's read tasks
    max_concurrent: int | None = None

    def per_trial(self) -> dict[str, float]:
        return {"CPU": float(self.cpus_per_trial), "GPU": float(self.gpus_per_trial)}


def tune_env() -> dict[str, str]:
    """The driver's Tune settings (a user's own values win)."""
    return {
        # Tune's new output engine ignores CLIReporter; the classic one prints our columns.
        "RAY_AIR_NEW_OUTPUT": "0",
        # Checkpointing every iteration is deliberate (fault tolerance); don't warn about it.
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
        # Loggers are chosen by --logger (tune/tracking.py), not added by Tune on its own.
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
        "TUNE_MAX_PENDING_TRIALS_PG": str(MAX_PENDING_TRIALS),
    }


@contextmanager
def tune_environment() -> Iterator[None]:
    """Tune reads its settings from the environment: set them while a fit runs, then undo."""
    added = {key: value for key, value in tune_env().items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def worker_env() -> dict[str, str]:
    """Environment variables for every Ray worker (runtime_env env_vars)."""
    return {"RAY_DATA_PARQUET_FOOTER_NUM_ACTORS": str(PARQUET_FOOTER_ACTORS)}


def ray_init_settings(address: str | None, num_cpus: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ray.init`` (beyond resources) that keep start-up quiet.

    Worker start-up: Ray allows min(cores, logical CPUs) workers to start at once and warns
    once four times that many are alive. Trials, their Ray Data tasks and actors on the
    extra logical CPUs kept for Ray Data outnumber the cores of a small machine, so a local
    Ray allows as many start-ups as logical CPUs.
    """
    from diffcps_ray import ray_shims

    settings: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        ray_shims.quiet_local_token_auth()
        if num_cpus is not None:
            settings.update(ray_shims.worker_startup_concurrency(int(num_cpus)))
    return settings


def start_ray(address: str | None, data_cpus: float) -> bool:
    """Join ``address`` or start a local Ray; returns whether we started (and must stop) it."""
    import ray

    from diffcps_ray.runtime import thread_env

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {**thread_env(1), **worker_env()}}
    if address:
        try:
            ray.init(address=address, runtime_env=runtime_env, **ray_init_settings(address))
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RayStartError(
                f"Could not join the Ray cluster at {address} ({first_line(error, 200)}); check "
                f"that `ray start --head` runs there and that the address is right.") from None
        return True
    # Logical CPUs beyond the cores stay free of trials for Ray Data's read tasks, which run
    # outside the trials' placement groups (with no spare CPU they wait forever). "local":
    # a new instance even where `ray start` left one running (ray.init() would join it and
    # then refuse num_cpus); --address joins a cluster.
    num_cpus = (os.cpu_count() or 1) + math.ceil(data_cpus)
    ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env,
             **ray_init_settings(None, num_cpus))
    return True


def concurrency(resources: Resources, cluster: dict[str, float] | None = None) -> int:
    """How many trials may run at once: the CPUs (and GPUs) left after Ray Data's share.

    At least 1 even on a cluster without GPUs yet: a pending trial is what asks an
    autoscaler for a GPU node.
    """
    if resources.max_concurrent:
        return resources.max_concurrent
    if cluster is None:
        import ray

        cluster = ray.cluster_resources()
    cpus = float(cluster.get("CPU", 1)) - resources.data_cpus
    limit = int(cpus // max(resources.cpus_per_trial, 1e-9))
    if resources.gpus_per_trial > 0:
        gpus = float(cluster.get("GPU", 0))
        limit = min(limit, int(gpus // resources.gpus_per_trial + 1e-9))
    if cluster.get("memory"):
        # Many cores and little RAM: trials would be killed by Ray's memory monitor.
        limit = min(limit, int(float(cluster["memory"]) // MEMORY_PER_TRIAL))
    return max(1, limit)


class GpuWait:
    """Says once that trials wait for GPUs the cluster lacks, and once that they came."""

    def __init__(self, gpus_per_trial: float) -> None:
        self.gpus_per_trial = gpus_per_trial
        self.waiting = False

    def check(self, cluster_gpus: float) -> str | None:
        """The line to print for the cluster's GPUs now, if any."""
        if self.gpus_per_trial <= 0:
            return None
        waiting = cluster_gpus < self.gpus_per_trial
        if waiting and not self.waiting:
            self.waiting = True
            return (f"[sweep] waiting for GPUs: the Ray cluster has {cluster_gpus:g} and a "
                    f"trial needs {self.gpus_per_trial:g}; trials start as GPU nodes join (an "
                    f"autoscaler adds them for the pending trial). Ctrl-C stops and keeps the "
                    f"sweep for --resume.")
        if not waiting and self.waiting:
            return self._arrived(cluster_gpus)
        return None

    def trial_started(self) -> str | None:
        """A trial started: if the sweep was waiting, the GPUs have come."""
        if not self.waiting:
            return None
        import ray

        return self._arrived(float(ray.cluster_resources().get("GPU", 0)))

    def _arrived(self, cluster_gpus: float) -> str:
        self.waiting = False
        return f"[sweep] {cluster_gpus:g} GPU(s) available now; trials start."
