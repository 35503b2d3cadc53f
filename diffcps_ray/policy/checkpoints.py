"""Read the policy of a DiffCPS RLlib Algorithm checkpoint, without Ray and without pickles.

An Algorithm checkpoint (``DiffCPS.save_to_path``) holds RLlib's own files
(``rllib_checkpoint.json``, ``learner_group/``, ...) and ``policy/``: the acting policy in
the project's own format (``policy.json`` + ``weights.pt``, see ``policy.core``), written
by the Algorithm at every save. Only ``policy/`` is read here: its JSON, and its weights
with ``torch.load(weights_only=True, map_location="cpu")``. RLlib's pickles are never
opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.policy.core import POLICY_FILE, PolicyError, read_policy_files

RLLIB_CHECKPOINT_FILE = "rllib_checkpoint.json"
LEARNER_DIR = Path("learner_group", "learner")
# Where DiffCPS.save_to_path writes the policy inside an Algorithm checkpoint.
CHECKPOINT_POLICY_DIR = "policy"
# Where DiffCPSTrial.save_checkpoint puts the Algorithm inside a Tune checkpoint.
TUNE_ALGORITHM_DIR = "algorithm"


@dataclass
class CheckpointContents:
    """What a checkpoint's ``policy/`` says: the task, the networks' settings and weights."""

    task: str | None
    obs_dim: int
    act_dim: int
    settings: DiffCPSSettings
    weights: Mapping[str, Any]  # name -> float32 CPU tensor (actor.*, critic_target.*)
    num_gradient_steps: int
    iteration: int | None = None
    score: float | None = None  # the normalised score of these weights, if evaluated
    eval_env: dict[str, Any] | None = None  # the data's recorded evaluation env
    provenance: dict[str, Any] = field(default_factory=dict)


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
    """The policy saved in the Algorithm checkpoint at ``path`` (its ``policy/``)."""
    directory = path / CHECKPOINT_POLICY_DIR
    if not (directory / POLICY_FILE).is_file():
        raise PolicyError(
            f"{path} has no {CHECKPOINT_POLICY_DIR}/{POLICY_FILE}: it was saved before "
            f"checkpoints carried their policy; restore it with Ray "
            f"(diffcps_ray.rllib.DiffCPS.from_checkpoint) and save it again."
        )
    meta, weights = read_policy_files(directory)
    provenance = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    try:
        return CheckpointContents(
            task=str(meta["task"]) if meta.get("task") else None,
            obs_dim=int(meta["obs_dim"]),
            act_dim=int(meta["act_dim"]),
            settings=DiffCPSSettings.from_dict(meta["settings"]),
            weights=weights,
            num_gradient_steps=int(provenance.get("num_gradient_steps") or 0),
            iteration=provenance.get("iteration"),
            score=meta.get("score"),
            eval_env=meta.get("eval_env"),
            provenance=dict(provenance),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise PolicyError(f"{directory / POLICY_FILE} lacks the field {error}.") from None
