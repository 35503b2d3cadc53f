"""Process-level settings every entry point applies before doing work."""

from __future__ import annotations

import contextlib
import os

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def set_torch_threads(num_threads: int = 1) -> None:
    """Pin torch (and the BLAS libraries under it) to ``num_threads`` threads.

    On small machines several processes (driver, learners, Ray Data tasks, env runners)
    share a few cores; torch's default of one thread per core makes them contend and
    small-matrix steps run up to 100x slower. Call this in every process.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}.")
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(num_threads)
    import torch

    torch.set_num_threads(num_threads)
    # Raises once parallel work has started in this process; the intra-op setting is what matters.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def thread_env(num_threads: int = 1) -> dict[str, str]:
    """Environment variables that pin threads in a child process (Ray runtime_env)."""
    return {name: str(num_threads) for name in THREAD_ENV_VARS}
