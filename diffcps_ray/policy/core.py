"""``Policy``: a trained DiffCPS actor and target critics that act, without Ray.

An exported policy directory (docs/policies.md) holds two files:

- ``policy.json``: ``format_version``, ``task``, ``obs_dim``, ``act_dim``, ``settings``
  (every ``DiffCPSSettings`` field), ``eval_env`` (the evaluation env the data recorded, a
  manifest ``eval_env`` record, or null), ``score`` (the normalised score it had, or null),
  ``provenance`` (where it came from: kind, trial, iteration, checkpoint, ...), ``weights``
  (the weights file's name) and ``written_by`` (the package version);
- ``weights.pt``: a flat ``{name: float32 tensor}`` dict saved with ``torch.save``, loadable
  with ``torch.load(path, weights_only=True)``; names are ``actor.<parameter>`` (the
  diffusion noise model) and ``critic_target.<parameter>`` (the twin target critics), the
  two networks the evaluation action uses.

``Policy.act`` is ``DiffCPSAgent.act``: 50 reverse-diffusion candidates per state from the
actor, one drawn from softmax over the target critics' min(Q1, Q2).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffcps_ray.algorithm.agent import DiffCPSAgent
from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.atomic import replace_dir
from diffcps_ray.errors import DiffCPSError, read_json_object

if TYPE_CHECKING:
    from diffcps_ray.envs.tasks import TaskSpec

POLICY_FORMAT_VERSION = 1
POLICY_FILE = "policy.json"
WEIGHTS_FILE = "weights.pt"
# The agent networks an acting policy needs (DiffCPSAgent.act): the online actor samples
# the candidates, the target critics score them.
ACTING_NETWORKS = ("actor", "critic_target")


class PolicyError(DiffCPSError):
    """A policy that cannot be read, found or used."""


class Policy:
    """A DiffCPS policy on ``device``: ``act(obs)`` for a numpy batch of observations.

    Attributes: ``task`` (the task's name), ``obs_dim``, ``act_dim``, ``settings``
    (``DiffCPSSettings``), ``eval_env`` (the data's recorded evaluation env record, or
    None), ``score`` (its normalised score when it was saved, or None) and ``provenance``
    (a dict: where it came from).
    """

    def __init__(
        self,
        *,
        task: str,
        obs_dim: int,
        act_dim: int,
        settings: DiffCPSSettings,
        weights: Mapping[str, Any],
        eval_env: Mapping[str, Any] | None = None,
        score: float | None = None,
        provenance: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.task = task
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.settings = settings
        self.eval_env = dict(eval_env) if eval_env else None
        self.score = None if score is None else float(score)
        self.provenance = dict(provenance or {})
        self.weights = {
            name: torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
            .detach().to("cpu", torch.float32).clone()
            for name, value in weights.items()
            if name.split(".", 1)[0] in ACTING_NETWORKS
        }  # fmt: skip
        self._agent = DiffCPSAgent(self.obs_dim, self.act_dim, settings, device=device,
                                   seed=seed, own_optimizers=False)  # acts only
        for network in ACTING_NETWORKS:
            prefix = f"{network}."
            state = {k[len(prefix):]: v for k, v in self.weights.items() if k.startswith(prefix)}
            try:
                getattr(self._agent, network).load_state_dict(state)
            except RuntimeError as error:
                first = str(error).strip().splitlines()[0]
                raise PolicyError(
                    f"The {network} weights do not fit the settings' networks ({first})."
                ) from None
        self.seed(seed)

    @property
    def device(self) -> torch.device:
        return self._agent.device

    def seed(self, seed: int) -> None:
        """Restart the candidate draws from ``seed`` (the same seed gives the same actions)."""
        self._agent.eval_generator.manual_seed(int(seed))

    def act(self, obs: Any) -> np.ndarray:
        """Actions (B, act_dim) in [-1, 1] for observations (B, obs_dim); one row: (act_dim,)."""
        batch = np.asarray(obs, dtype=np.float32)
        if batch.ndim not in (1, 2) or batch.shape[-1] != self.obs_dim:
            raise PolicyError(
                f"act() takes observations of shape (B, {self.obs_dim}) for {self.task}, "
                f"got {batch.shape}."
            )
        with torch.no_grad():
            actions = self._agent.act(batch)  # pinned, non-blocking on CUDA
        return actions.cpu().numpy()

    __call__ = act

    def task_spec(self) -> TaskSpec:
        """The task's spec, evaluating in the data's recorded env where there is one."""
        from diffcps_ray.envs.tasks import get_task

        return get_task(self.task).with_eval_env(self.eval_env)

    def describe(self) -> str:
        """Where this policy came from, in a few words (for log lines)."""
        p = self.provenance
        kind = p.get("kind", "policy")
        if kind == "trial":
            kind = f"{p['phase']} trial" if p.get("phase") else "trial"
            kind += f" {p['trial_id']}" if p.get("trial_id") else ""
        elif kind == "train":
            kind = "train run"
        parts = [kind]
        if p.get("seed") is not None:
            parts.append(f"seed {p['seed']}")
        if p.get("checkpoint_kind"):
            label = {"best": "best-of-run"}.get(p["checkpoint_kind"], p["checkpoint_kind"])
            parts.append(f"{label} checkpoint")
        if p.get("iteration") is not None:
            parts.append(f"iteration {p['iteration']}")
        return ", ".join(str(x) for x in parts)

    # --- export ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        from diffcps_ray import __version__

        return {
            "format_version": POLICY_FORMAT_VERSION,
            "task": self.task,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "settings": self.settings.to_dict(),
            "eval_env": self.eval_env,
            "score": self.score,
            "provenance": self.provenance,
            "weights": WEIGHTS_FILE,
            "written_by": f"diffcps-ray {__version__}",
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``policy.json`` and ``weights.pt`` into ``directory`` (replacing it whole).

        Written into a temporary sibling first and renamed at the end: a crash leaves the
        previous export (or nothing), never half of one.
        """
        def write(tmp: Path) -> None:
            torch.save(self.weights, tmp / WEIGHTS_FILE)
            (tmp / POLICY_FILE).write_text(json.dumps(jsonable(self.to_json()), indent=2) + "\n")

        return replace_dir(directory, write)


def read_policy_files(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``policy.json`` and the weights of a policy directory, read without unpickling.

    The weights are loaded with ``torch.load(weights_only=True)`` onto the CPU; a newer
    format version is refused.
    """
    meta = read_policy_json(directory)
    weights_path = directory / str(meta.get("weights") or WEIGHTS_FILE)
    try:
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise PolicyError(f"{weights_path} is not a readable weights file ({error}).") from None
    if not isinstance(weights, dict):
        raise PolicyError(f"{weights_path} holds no weights dict.")
    return meta, weights


def read_policy_dir(directory: Path, device: str | torch.device = "cpu",
                    seed: int = 0) -> Policy:
    """Load an exported policy directory; a newer format version is refused."""
    meta, weights = read_policy_files(directory)
    try:
        settings = DiffCPSSettings.from_dict(meta["settings"])
        return Policy(
            task=str(meta["task"]),
            obs_dim=int(meta["obs_dim"]),
            act_dim=int(meta["act_dim"]),
            settings=settings,
            weights=weights,
            eval_env=meta.get("eval_env"),
            score=meta.get("score"),
            provenance=meta.get("provenance"),
            device=device,
            seed=seed,
        )
    except (KeyError, TypeError) as error:
        raise PolicyError(f"{directory / POLICY_FILE} lacks the field {error}.") from None


def read_policy_json(directory: Path) -> dict[str, Any]:
    path = directory / POLICY_FILE
    meta = read_json_object(path, PolicyError)
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PolicyError(f"{path} has no valid format_version ({version!r}).")
    if version > POLICY_FORMAT_VERSION:
        raise PolicyError(
            f"{directory} was written in policy format {version} by a newer diffcps-ray; "
            f"this version reads format {POLICY_FORMAT_VERSION}, so upgrade diffcps-ray to "
            f"load it."
        )
    return meta


def jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
