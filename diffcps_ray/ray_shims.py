"""Every use of a private Ray API in diffcps-ray, in one place, each with why.

A Ray upgrade that moves or renames one of these fails tests/test_ray_shims.py with a
message naming the shim and the Ray version, instead of breaking a sweep somewhere else.
docs/architecture.md lists them.
"""

from __future__ import annotations

from typing import Any


def quiet_local_token_auth() -> None:
    """Turn Ray's token authentication on for a new local instance before it starts.

    Ray 2.60 turns it on by itself for a new local instance and warns that it did unless
    RAY_AUTH_MODE says so; the public switch (the variable) is read when Ray is imported,
    too late for a driver that imports Ray first. Ray's own setup function sets it and
    refreshes what Ray read. Joining a cluster, authentication is the cluster's business.
    """
    import os

    if "RAY_AUTH_MODE" in os.environ:
        return
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()


def worker_startup_concurrency(num_cpus: int) -> dict[str, Any]:
    """``ray.init`` keyword arguments letting a local Ray start ``num_cpus`` workers at once.

    Only Ray's internal ``_system_config`` sets it; without it Ray starts at most one worker
    per core at a time and warns on a small machine where trials outnumber cores.
    """
    return {"_system_config": {"worker_maximum_startup_concurrency": int(num_cpus)}}
