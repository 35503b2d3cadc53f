"""Every use of an RLlib private API in diffcps-ray, each for want of a public one.

Checked against Ray 2.60; ``tests/test_ray_shims.py`` fails, naming the Ray version, when
one of them changes. Nothing else in the package touches RLlib's underscored names
(except the override points RLlib's own algorithms use: ``AlgorithmConfig._is_online``
and ``_model_config_auto_includes``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.utils.checkpoints import Checkpointable

__all__ = ["SkipDDPWrapping", "restore_without_env_runners", "wants_component"]


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
