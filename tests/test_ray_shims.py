"""The RLlib private APIs diffcps_ray/ray_shims.py relies on still exist as used.

Each failure names the installed Ray version and the shim to update, so a Ray upgrade
that breaks one says where, instead of failing somewhere inside a training run.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.checkpoints import Checkpointable

from diffcps_ray import ray_shims
from diffcps_ray.rllib.learner import DiffCPSTorchLearner


def _broken(shim: str, what: str) -> str:
    return (f"Ray {ray.__version__}: {what}; update {shim} in diffcps_ray/ray_shims.py "
            f"(written against Ray 2.60).")  # fmt: skip


def _parameters(function: object) -> list[str]:
    # Ray's tracing adds _ray_trace_ctx to methods of classes made into actors.
    return [name for name in inspect.signature(function).parameters
            if not name.startswith("_ray_")]  # fmt: skip


def test_torch_learner_still_wraps_ddp_through_the_hook_skip_ddp_wrapping_overrides():
    shim = "SkipDDPWrapping"
    hook = getattr(TorchLearner, "_make_modules_ddp_if_necessary", None)
    assert callable(hook), _broken(shim, "TorchLearner._make_modules_ddp_if_necessary is gone")
    assert _parameters(hook) == ["self"], _broken(
        shim, f"_make_modules_ddp_if_necessary now takes {_parameters(hook)}"
    )
    assert "_make_modules_ddp_if_necessary" in inspect.getsource(TorchLearner.build), _broken(
        shim, "TorchLearner.build no longer calls _make_modules_ddp_if_necessary"
    )
    # The mixin comes first in the Learner's bases, so its hook is the one that runs.
    assert DiffCPSTorchLearner._make_modules_ddp_if_necessary is (
        ray_shims.SkipDDPWrapping._make_modules_ddp_if_necessary
    )


def test_checkpointable_restore_from_path_is_still_algorithms_parent():
    shim = "restore_without_env_runners"
    assert issubclass(Algorithm, Checkpointable), _broken(
        shim, "Algorithm is no longer a Checkpointable"
    )
    params = inspect.signature(Checkpointable.restore_from_path).parameters
    for name in ("path", "component", "filesystem"):
        assert name in params, _broken(
            shim, f"Checkpointable.restore_from_path has no {name!r} argument any more"
        )
    # The reason for the shim: Algorithm's own restore syncs env runners unconditionally.
    source = inspect.getsource(Algorithm.restore_from_path)
    assert "super().restore_from_path" in source, _broken(
        shim, "Algorithm.restore_from_path no longer builds on Checkpointable's"
    )


def test_check_component_keeps_rllibs_component_rule():
    shim = "wants_component"
    check = getattr(Checkpointable, "_check_component", None)
    assert callable(check), _broken(shim, "Checkpointable._check_component is gone")
    assert _parameters(check) == ["self", "name", "components", "not_components"], _broken(
        shim, f"Checkpointable._check_component now takes {_parameters(check)}"
    )

    class Plain(Checkpointable):
        def get_state(self, *args, **kwargs):
            return {}

        def set_state(self, state):
            return None

        def get_ctor_args_and_kwargs(self):
            return (), {}

    plain = Plain()
    cases = [
        ((None, None), True),
        (("agent", None), True),
        ((["agent/sub"], None), True),
        (("rl_module", None), False),
        ((None, ["agent"]), False),
    ]
    for (components, not_components), expected in cases:
        got = ray_shims.wants_component(plain, "agent", components, not_components)
        assert got is expected, _broken(
            shim, f"_check_component('agent', {components!r}, {not_components!r}) is {got}"
        )


def test_rays_token_setup_function_still_exists_for_quiet_local_token_auth():
    shim = "quiet_local_token_auth"
    try:
        from ray._private.authentication import authentication_token_setup
    except ImportError:
        raise AssertionError(_broken(shim, "ray._private.authentication."
                                           "authentication_token_setup is gone")) from None
    setup = getattr(authentication_token_setup, "_enable_token_auth", None)
    assert callable(setup), _broken(shim, "_enable_token_auth is gone")


def test_ray_init_still_takes_the_system_config_worker_startup_concurrency_uses():
    shim = "worker_startup_concurrency"
    # ray.init is wrapped (client mode); its own source reads the keyword.
    assert '"_system_config"' in inspect.getsource(ray._private.worker.init), _broken(
        shim, "ray.init no longer takes _system_config")
    settings = ray_shims.worker_startup_concurrency(6)
    assert settings == {"_system_config": {"worker_maximum_startup_concurrency": 6}}
    # The key is a C++ RayConfig entry: it is compiled into the raylet library.
    raylet = Path(ray.__file__).parent / "_raylet.so"
    assert b"worker_maximum_startup_concurrency" in raylet.read_bytes(), _broken(
        shim, "Ray's config has no worker_maximum_startup_concurrency")


def test_rays_address_resolver_still_exists_for_resolve_ray_address():
    shim = "resolve_ray_address"
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:
        raise AssertionError(_broken(shim, "canonicalize_bootstrap_address_or_die is gone")) \
            from None
    assert _parameters(canonicalize_bootstrap_address_or_die)[0] == "addr", _broken(
        shim, "canonicalize_bootstrap_address_or_die takes other arguments")
    # Ray names this machine by its own IP, not the loopback address it was given.
    assert ray_shims.resolve_ray_address("127.0.0.1:6379").endswith(":6379")
