"""Read a DiffCPS RLlib Algorithm checkpoint without Ray.

An Algorithm checkpoint (``algo.save_to_path``) holds, among RLlib's own files:

- ``learner_group/learner/rl_module/default_policy/module_state.pkl``: the RLModule's
  weights, a pickled ``{"actor.<param>": ndarray, "critic_target.<param>": ..., ...}``
  (RLlib converts module state to numpy, so it loads on any device);
- ``learner_group/learner/state.pkl``: the learner's state, with the agent's own
  ``state_dict`` under ``"diffcps_agent"`` (obs_dim, act_dim, settings, step counter).

Both are plain pickles. They are read with an unpickler that never imports Ray: any Ray
object inside (RLlib's metrics) becomes an inert placeholder, and torch tensors saved on a
GPU are mapped to the CPU.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.policy.core import PolicyError

RLLIB_CHECKPOINT_FILE = "rllib_checkpoint.json"
LEARNER_DIR = Path("learner_group", "learner")
MODULE_DIR = LEARNER_DIR / "rl_module" / "default_policy"
# The key DiffCPSTorchLearner.get_state stores the agent's state under (rllib/learner.py;
# not imported here because that module imports Ray).
AGENT_STATE_KEY = "diffcps_agent"
# Where DiffCPSTrial.save_checkpoint puts the Algorithm inside a Tune checkpoint.
TUNE_ALGORITHM_DIR = "algorithm"


@dataclass
class CheckpointContents:
    obs_dim: int
    act_dim: int
    settings: DiffCPSSettings
    weights: dict[str, np.ndarray]
    num_gradient_steps: int

    @property
    def task(self) -> str | None:
        task = (self.settings.extra or {}).get("task")
        return str(task) if task else None


class _Opaque:
    """Stands in for any Ray object inside a checkpoint pickle (none is needed to act)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Opaque:
        return _Opaque()


def _tensor_on_cpu(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


class _NoRayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "ray" or module.startswith("ray."):
            return _Opaque
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _tensor_on_cpu
        return super().find_class(module, name)


def _load_pickle(path: Path) -> Any:
    if not path.is_file():
        if path.with_suffix(".msgpack").is_file():
            raise PolicyError(
                f"{path.with_suffix('.msgpack')} is a msgpack checkpoint; load it with Ray "
                f"(RLModule.from_checkpoint) instead."
            )
        raise PolicyError(f"{path} is missing: the checkpoint is incomplete.")
    try:
        with open(path, "rb") as f:
            return _NoRayUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError,
            ModuleNotFoundError) as error:
        raise PolicyError(f"{path} could not be read ({error}).") from None


def is_algorithm_checkpoint(path: Path) -> bool:
    return (path / RLLIB_CHECKPOINT_FILE).is_file() and (path / LEARNER_DIR).is_dir()


def algorithm_dir(path: Path) -> Path | None:
    """The Algorithm checkpoint at ``path`` or inside a Tune checkpoint ``path``; or None."""
    if is_algorithm_checkpoint(path):
        return path
    inner = path / TUNE_ALGORITHM_DIR
    if is_algorithm_checkpoint(inner):
        return inner
    return None


def read_checkpoint(path: Path) -> CheckpointContents:
    """Settings, dims and acting weights of the Algorithm checkpoint at ``path``."""
    learner = _load_pickle(path / LEARNER_DIR / "state.pkl")
    agent = learner.get(AGENT_STATE_KEY) if isinstance(learner, dict) else None
    if not isinstance(agent, dict):
        raise PolicyError(f"{path} is not a DiffCPS checkpoint: its learner has no agent state.")
    module = _load_pickle(path / MODULE_DIR / "module_state.pkl")
    if not isinstance(module, dict):
        raise PolicyError(f"{path / MODULE_DIR} holds no module weights.")
    weights = {str(k): np.asarray(v) for k, v in module.items() if not isinstance(v, dict)}
    return CheckpointContents(
        obs_dim=int(agent["obs_dim"]),
        act_dim=int(agent["act_dim"]),
        settings=DiffCPSSettings.from_dict(agent["settings"]),
        weights=weights,
        num_gradient_steps=int(agent.get("num_steps", 0)),
    )
