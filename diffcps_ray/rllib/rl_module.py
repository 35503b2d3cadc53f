"""DiffCPSTorchRLModule: the DiffCPS agent's networks as an RLlib RLModule.

The module builds one ``DiffCPSAgent`` and registers the agent's own ``nn.Module``
attributes (diffusion actor, its EMA copy, twin critics, target critics) as its children.
There is one set of parameters: RLlib's weight sync, ``get_state``/``set_state`` and
checkpoints read and write exactly the tensors that ``DiffCPSAgent.update`` trains. The
module holds no optimisers: the Learner makes and registers them (``learner.py``).

The inference forward is the reverse-diffusion sampler with the authors' 50-candidate
softmax-Q pick (``DiffCPSAgent.act``); it returns ``Columns.ACTIONS`` in [-1, 1], so
RLlib's env runners can act without an action distribution (the GetActions connector
skips sampling when actions are present).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override
from torch import nn

from diffcps_ray.algorithm.agent import DiffCPSAgent
from diffcps_ray.algorithm.config import DiffCPSSettings

# model_config keys (filled by DiffCPSConfig._model_config_auto_includes).
SETTINGS_KEY = "diffcps_settings"
SEED_KEY = "diffcps_seed"

# (online network, target network) attribute pairs the agent keeps; the online critic and
# the EMA actor are training-only (evaluation samples from the online actor and scores
# with the target critics, docs/method.md "Evaluation action").
_TARGET_PAIRS = (("critic", "critic_target"), ("actor", "ema_actor"))
_TRAINING_ONLY = ("critic", "ema_actor")


def agent_networks(agent: Any) -> dict[str, nn.Module]:
    """The agent's networks by attribute name (the nn.Module attributes it holds)."""
    if isinstance(agent, nn.Module):
        return dict(agent.named_children())
    return {name: value for name, value in vars(agent).items() if isinstance(value, nn.Module)}


class DiffCPSTorchRLModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI):
    """RLModule whose parameters are a ``DiffCPSAgent``'s networks.

    ``model_config`` holds the resolved ``DiffCPSSettings`` (as a dict) and the seed;
    ``DiffCPSConfig`` puts them there. The agent is built on CPU here; the Learner moves
    it to its device (``to_device``) before it makes and registers the optimisers.
    """

    framework: str = "torch"

    @override(RLModule)
    def setup(self) -> None:
        settings = self.model_config.get(SETTINGS_KEY) or {}
        if isinstance(settings, DiffCPSSettings):
            settings = dataclasses.asdict(settings)
        self.settings = DiffCPSSettings(**settings)
        self._seed = int(self.model_config.get(SEED_KEY) or 0)
        self._build_agent(torch.device("cpu"))

    def _build_agent(self, device: torch.device) -> None:
        self.agent = DiffCPSAgent(
            obs_dim=int(self.observation_space.shape[0]),
            act_dim=int(self.action_space.shape[0]),
            settings=self.settings,
            device=str(device),
            seed=self._seed,
            own_optimizers=False,  # the Learner's (configure_optimizers_for_module)
        )
        self._network_names = tuple(agent_networks(self.agent))
        for name, network in agent_networks(self.agent).items():
            # Registered as children: the agent and this module share the same tensors.
            setattr(self, name, network)

    @property
    def device(self) -> torch.device:
        return torch.device(getattr(self.agent, "device", "cpu"))

    def to_device(self, device: torch.device | str) -> None:
        """Put the agent (networks, optimisers, lambda, generators) on ``device``.

        Called by the Learner before training starts. The agent is rebuilt there rather
        than moved: it owns non-module state (lambda, per-device generators) that
        ``nn.Module.to`` would not move. Its weights are initialised on
        the host from the seed, so the rebuilt agent is the same agent.
        """
        device = torch.device(device)
        if self.device == device:
            return
        if self.agent.num_steps:
            raise RuntimeError("A DiffCPS agent can only change device before training.")
        self._build_agent(device)

    # --- forward passes ------------------------------------------------------------------

    @override(RLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = torch.as_tensor(batch[Columns.OBS], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            actions = self.agent.act(obs)
        return {Columns.ACTIONS: actions}

    @override(RLModule)
    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Offline: exploration is never used for learning; act as in evaluation.
        return self._forward_inference(batch, **kwargs)

    @override(RLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # The Learner runs DiffCPSAgent.update directly (the losses need several passes
        # through actor and critics with different parameter sets), so there is no
        # separate training forward. One plain reverse-diffusion sample per state:
        obs = torch.as_tensor(batch[Columns.OBS], dtype=torch.float32, device=self.device)
        return {Columns.ACTIONS: self.agent.sample(obs)}

    # --- InferenceOnlyAPI ----------------------------------------------------------------

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return [name for name in _TRAINING_ONLY if name in self._network_names]

    # --- TargetNetworkAPI ----------------------------------------------------------------

    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        # The agent created its targets (critic_target, ema_actor) with itself; the
        # per-step Polyak and EMA updates happen inside DiffCPSAgent.update.
        return None

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [
            (getattr(self, online), getattr(self, target))
            for online, target in _TARGET_PAIRS
            if hasattr(self, online) and hasattr(self, target)
        ]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Target-critic values min(Q1', Q2') of (obs, actions)."""
        obs = torch.as_tensor(batch[Columns.OBS], dtype=torch.float32, device=self.device)
        actions = torch.as_tensor(batch[Columns.ACTIONS], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            q_twins = self.agent.critic_target(obs, actions)  # (2, B, 1)
        return {"q_target": q_twins.amin(dim=0).squeeze(-1)}

