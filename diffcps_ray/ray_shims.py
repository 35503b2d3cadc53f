"""Every use of a private Ray or RLlib API in diffcps-ray, each for want of a public one.

Checked against Ray 2.60; ``tests/test_ray_shims.py`` fails, naming the Ray version, when
one of them changes. Nothing else in the package touches Ray's underscored names (except
the override points RLlib's own algorithms use: ``AlgorithmConfig._is_online`` and
``_model_config_auto_includes``). docs/architecture.md lists them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.checkpoints import Checkpointable

__all__ = ["SkipDDPWrapping", "quiet_local_token_auth", "resolve_ray_address",
           "restore_without_env_runners", "wants_component", "worker_startup_concurrency"]


class SkipDDPWrapping:
    """Learner mixin: keep the RLModule unwrapped when ``num_learners > 1``.

    ``TorchLearner.build`` wraps modules in DDP through ``_make_modules_ddp_if_necessary``
    (an override point RLlib marks as such, but underscored; there is no config switch).
    DDP's gradient hooks only act through its own ``forward``, which the DiffCPS agent
    never calls, so the wrapper would only cost memory; the DiffCPS Learner averages
    gradients itself. List this mixin before ``TorchLearner`` in the bases.
    """

    def _make_modules_ddp_if_necessary(self) -> None:
        return None


def restore_without_env_runners(algorithm: Algorithm, path: Any, *args: Any,
                                **kwargs: Any) -> None:
    """``Checkpointable.restore_from_path`` for an Algorithm that has no env runners.

    ``Algorithm.restore_from_path`` (Ray 2.60) syncs weights to ``env_runner_group``
    unconditionally, which is None for an offline Algorithm without env runners; its
    parent restores the components (learner group, metrics, the Algorithm's own state)
    without that step.
    """
    Checkpointable.restore_from_path(algorithm, path, *args, **kwargs)


def wants_component(checkpointable: Checkpointable, name: str,
                    components: str | Collection[str] | None,
                    not_components: str | Collection[str] | None) -> bool:
    """Whether ``get_state(components, not_components=...)`` asks for component ``name``.

    RLlib's rule (``Checkpointable._check_component``, meant for subclasses' ``get_state``;
    no public equivalent), reused so the DiffCPS state follows the same component paths.
    """
    return bool(checkpointable._check_component(name, components, not_components))


# --- Ray core ------------------------------------------------------------------------------


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
    _token_in_environment()


def _token_in_environment() -> None:
    """A fresh token in RAY_AUTH_TOKEN unless Ray already finds one (variable or file).

    Where no token exists yet, Ray would write a new one to ``~/.ray/auth_token``, and a
    later ``ray start --head`` on this machine would find it and turn authentication on for
    a cluster (whose joining nodes then need ``RAY_AUTH_MODE=token``). The private instance
    gets its token in this process's environment instead, inherited by the nodes and workers
    it starts, and nothing is written to the home directory.
    """
    import os

    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    if loader.has_token(ignore_auth_mode=True):
        return
    os.environ["RAY_AUTH_TOKEN"] = generate_new_authentication_token()
    loader.reset_cache()


def worker_startup_concurrency(num_cpus: int) -> dict[str, Any]:
    """``ray.init`` keyword arguments letting a local Ray start ``num_cpus`` workers at once.

    Only Ray's internal ``_system_config`` sets it; without it Ray starts at most one worker
    per core at a time and warns on a small machine where trials outnumber cores.
    """
    return {"_system_config": {"worker_maximum_startup_concurrency": int(num_cpus)}}


def resolve_ray_address(address: str) -> str:
    """``--address`` (HOST:PORT or auto) as the HOST:PORT Ray would connect to.

    Ray resolves "auto" (RAY_ADDRESS, then the address file of a local ``ray start``) only
    inside ``ray.init``, which then retries an unreachable address for minutes; its
    resolver lets the command check the address first. Raises ConnectionError or ValueError.
    """
    from ray._private.services import canonicalize_bootstrap_address_or_die

    return canonicalize_bootstrap_address_or_die(address)
