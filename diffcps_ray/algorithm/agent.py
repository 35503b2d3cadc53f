"""DiffCPSAgent: networks, the full training step, and action selection.

One :meth:`DiffCPSAgent.update` is one iteration of the paper's Algorithm 1 as the
authors' implementation runs it:

1. critic step (every step): target from the EMA actor and target critics
   (:func:`update.critic_target`), twin MSE, Adam with grad-norm clipping;
2. if ``step % freq == 0``: actor step on ``clamp(lambda) L_c + q_loss`` (eq. [mu3]) and
   one Adam step on the dual objective ``lambda (kappa - L_c)`` (eq. [eta2]);
3. Polyak update of the target critics (every step); EMA of the actor every
   ``ema_interval`` steps from ``ema_start_step``.

Every random draw uses the agent's own generators, so ``state_dict`` /
``load_state_dict`` resume bit-identically. Metrics are detached 0-dim tensors (no host
sync per step on GPUs).

The three Adam optimisers (``OPTIMIZER_NAMES``) come from :meth:`DiffCPSAgent.make_optimizers`.
A standalone agent owns a set (``agent.optimizers``); inside RLlib the Learner makes and
registers them and passes them to ``update`` (the agent is then built with
``own_optimizers=False``).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from diffcps_ray.algorithm import update as rules
from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.algorithm.critics import NUM_TWINS, TwinCritic
from diffcps_ray.algorithm.device import configure_cuda_backends, host_to_device
from diffcps_ray.algorithm.diffusion import (
    DiffusionSchedule,
    NoiseModel,
    diffusion_loss,
    reverse_sample,
)
from diffcps_ray.errors import ConfigError, DiffCPSError

METRIC_NAMES = (
    "critic_loss", "diffusion_loss", "actor_loss", "q_loss", "lambda", "lambda_clamped",
    "q_mean", "critic_grad_norm", "actor_grad_norm",
)  # fmt: skip
_ACTOR_METRICS = ("diffusion_loss", "actor_loss", "q_loss", "lambda_clamped", "actor_grad_norm")
# The optimisers' names (also the names the RLlib Learner registers them under).
OPTIMIZER_NAMES = ("actor", "critic", "lambda")
# 2: the optimisers' states are present only when the agent owns its optimisers.
# 1: they were always present (still read).
STATE_DICT_VERSION = 2
READABLE_STATE_DICT_VERSIONS = (1, 2)


def _make_adam(params: list[Tensor], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for this device (about +5%)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def _clip_grad_norm(params: list[Tensor], max_norm: float) -> Tensor:
    """Total L2 gradient norm before clipping; clips in place when ``max_norm > 0``."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, foreach=True)


class DivergedError(DiffCPSError):
    """The agent's weights are no longer finite (NaN or infinite values)."""


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    """A generator's state with the kind of generator it belongs to.

    CPU generators (Mersenne Twister, 5056 bytes) and CUDA ones (Philox: seed and offset,
    16 bytes) have states of different sizes that neither accepts from the other; the
    device type lets a checkpoint written on one device be resumed on the other.
    """
    return {"device_type": generator.device.type, "state": generator.get_state()}


def restore_generator(generator: torch.Generator, saved: dict[str, Any] | Tensor) -> None:
    """Set ``generator`` from :func:`generator_state` (or a bare state tensor).

    A state from the other kind of generator cannot continue the same stream (different
    algorithms); the generator is then seeded from a digest of that state, so a resumed
    run stays deterministic and its draws stay distinct from a fresh run's.
    """
    if isinstance(saved, dict):
        device_type, state = saved.get("device_type"), saved["state"]
    else:
        device_type, state = None, saved
    # Generator states are CPU byte tensors even for CUDA generators.
    state = state.cpu()
    if device_type in (None, generator.device.type) and (
            state.numel() == generator.get_state().numel()):
        generator.set_state(state)
        return
    digest = hashlib.sha256(state.numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


class DiffCPSAgent:
    """DiffCPS on torch tensors: ``update(batch)``, ``act(obs)``, ``sample(obs)``.

    ``own_optimizers``: make the three optimisers here (``self.optimizers``); with False
    the caller makes them with :meth:`make_optimizers` and passes them to ``update``.

    Three generators: ``generator`` (training draws; also the one to pass to
    ``TransitionBuffer.sample`` so minibatch order is saved with the agent), a host-side
    generator for the actor step's Q1/Q2 coin (no device sync), and ``eval_generator``
    for ``act``/``sample`` so evaluating does not change the training trajectory.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        settings: DiffCPSSettings | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        own_optimizers: bool = True,
    ) -> None:
        settings = settings if settings is not None else DiffCPSSettings()
        settings.validate()
        if obs_dim < 1 or act_dim < 1:
            raise ConfigError(f"obs_dim and act_dim must be positive, got {obs_dim}, {act_dim}.")
        self.settings = settings
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        if self.device.type == "cuda":
            configure_cuda_backends()
        self.seed = seed
        s = settings

        # Initialise on the host from a seeded generator, then move: same weights on any device.
        init_generator = torch.Generator().manual_seed(seed)
        self.actor = NoiseModel(
            obs_dim, act_dim, s.T, s.hidden_dim, s.time_embed_dim, init_generator
        ).to(self.device)
        self.critic = TwinCritic(obs_dim, act_dim, s.hidden_dim, init_generator).to(self.device)
        self.ema_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.schedule = DiffusionSchedule(s.T, s.vp_beta_min, s.vp_beta_max).to(
            self.device
        )
        self.lambda_param = torch.tensor(
            float(s.lambda_init), device=self.device, requires_grad=True
        )

        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critic.parameters())
        self._base_lrs = {"actor": s.actor_lr, "critic": s.critic_lr, "lambda": s.lambda_lr}
        self.optimizers: dict[str, torch.optim.Optimizer] | None = (
            self.make_optimizers() if own_optimizers else None
        )

        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.eval_generator = torch.Generator(device=self.device).manual_seed(seed + 2)
        self._coin_generator = torch.Generator().manual_seed(seed + 3)
        self.num_steps = 0

        nan = torch.full((), math.nan, device=self.device)
        self._last_actor_metrics: dict[str, Tensor] = dict.fromkeys(_ACTOR_METRICS, nan)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """New Adam optimisers by name (``OPTIMIZER_NAMES``) over this agent's parameters."""
        params = {"actor": self.actor_params, "critic": self.critic_params,
                  "lambda": [self.lambda_param]}  # fmt: skip
        return {name: _make_adam(params[name], self._base_lrs[name], self.device)
                for name in OPTIMIZER_NAMES}  # fmt: skip

    def _optimizers_or(
        self, optimizers: Mapping[str, torch.optim.Optimizer] | None
    ) -> Mapping[str, torch.optim.Optimizer]:
        found = optimizers if optimizers is not None else self.optimizers
        if found is None:
            raise RuntimeError(
                "This DiffCPSAgent has no optimisers of its own (own_optimizers=False): "
                "pass the ones make_optimizers() made."
            )
        return found

    # ------------------------------------------------------------------ training step --
    def update(
        self,
        batch: dict[str, Tensor],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    ) -> dict[str, Tensor]:
        """One gradient step: critic; actor and lambda when ``step % freq == 0``; targets.

        ``batch``: ``obs`` (B, obs_dim), ``actions`` (B, act_dim), ``rewards`` (B,) already
        tuned, ``new_obs`` (B, obs_dim), ``terminateds`` (B,) as float 0/1; all float32 on
        the agent's device. ``optimizers``: by name (``OPTIMIZER_NAMES``); default: the
        agent's own. Returns detached 0-dim tensors named in ``METRIC_NAMES``;
        the actor's entries (``diffusion_loss, actor_loss, q_loss, lambda_clamped,
        actor_grad_norm``) come from the last actor step, ``lambda`` is the raw multiplier
        after this step, ``q_mean`` the online critics' mean Q on the batch before it.
        """
        s = self.settings
        optimizers = self._optimizers_or(optimizers)
        obs, actions, rewards, next_obs, not_done = _unpack(batch)
        step = self.num_steps

        metrics = self._critic_step(obs, actions, rewards, next_obs, not_done,
                                    optimizers["critic"])  # fmt: skip
        if rules.policy_step_due(step, s.freq):
            self._last_actor_metrics = self._actor_and_lambda_step(
                obs, actions, optimizers["actor"], optimizers["lambda"]
            )
        metrics.update(self._last_actor_metrics)
        metrics["lambda"] = self.lambda_param.detach().clone()

        rules.polyak_update_(self.critic_target.parameters(), self.critic_params, s.tau)
        if rules.ema_due(step, s.ema_interval, s.ema_start_step):
            rules.ema_update_(self.ema_actor.parameters(), self.actor_params, s.ema_decay)
        self.num_steps += 1
        if s.lr_decay:
            self._apply_lr_decay(optimizers)
        return metrics

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The three losses of one step on ``batch`` at the current parameters, no step.

        ``critic_loss`` (twin TD), ``actor_loss`` (eq. [mu3]) and ``lambda_loss`` (eq.
        [eta2]), with their parts ``diffusion_loss`` and ``q_loss``; the first three carry
        gradients only into the critic, the actor and lambda respectively, so their sum
        has each optimiser's gradient. Unlike ``update``, the actor's loss sees the critic
        before (not after) this step's critic update. The noise is drawn from copies of
        the training generators: calling this leaves the training trajectory unchanged.
        """
        obs, actions, rewards, next_obs, not_done = _unpack(batch)
        with self._forked_training_generators():
            critic_loss, _ = self._critic_loss(obs, actions, rewards, next_obs, not_done)
            policy = self._policy_losses(obs, actions)
        return {
            "critic_loss": critic_loss,
            "actor_loss": policy["actor_loss"],
            "lambda_loss": policy["lambda_loss"],
            "diffusion_loss": policy["diffusion_loss"],
            "q_loss": policy["q_loss"],
        }

    @contextmanager
    def _forked_training_generators(self) -> Iterator[None]:
        generators = (self.generator, self._coin_generator)
        saved = [g.get_state() for g in generators]
        try:
            yield
        finally:
            for generator, state in zip(generators, saved, strict=True):
                generator.set_state(state)

    def _critic_loss(
        self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, not_done: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Twin TD loss against the EMA actor's next actions and the target critics; Q."""
        s = self.settings
        k = s.num_backup_samples if s.max_q_backup else 1
        with torch.no_grad():
            next_actions = reverse_sample(
                self.ema_actor, self.schedule, next_obs, self.generator, s.max_action, k
            )
            next_q = self.critic_target(next_obs, next_actions).view(NUM_TWINS, -1, k)
            target = rules.critic_target(rewards, not_done, next_q, s.gamma)

        q = self.critic(obs, actions)
        return rules.critic_loss(q, target), q

    def _critic_step(
        self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor,
        not_done: Tensor, optimizer: torch.optim.Optimizer,
    ) -> dict[str, Tensor]:  # fmt: skip
        loss, q = self._critic_loss(obs, actions, rewards, next_obs, not_done)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _clip_grad_norm(self.critic_params, self.settings.grad_norm)
        optimizer.step()
        return {
            "critic_loss": loss.detach(),
            "q_mean": q.detach().mean(),
            "critic_grad_norm": grad_norm.detach(),
        }

    def _policy_losses(self, obs: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """Actor loss (eq. [mu3]) and dual loss (eq. [eta2]) with their parts."""
        s = self.settings
        # Shared by L_c and the reverse chain: the first layer's state and time parts.
        state_features = self.actor.state_features(obs)
        time_features = self.actor.time_features()

        def predict_noise(noisy: Tensor, steps: Tensor) -> Tensor:
            return self.actor.eps_from_features(noisy, state_features + time_features[steps])

        bc_loss = diffusion_loss(predict_noise, self.schedule, actions, self.generator)
        new_actions = reverse_sample(
            self.actor,
            self.schedule,
            obs,
            self.generator,
            s.max_action,
            state_features=state_features,
            time_features=time_features,
        )
        # Fair coin: which online critic carries the gradient, which one normalises.
        q1_carries_gradient = torch.rand((), generator=self._coin_generator).item() < 0.5
        grad_twin = 0 if q1_carries_gradient else 1
        with torch.no_grad():  # the critic's state rows do not depend on the actor
            critic_features = self.critic.state_features(obs)
        q_grad = self.critic.single_q(
            grad_twin, obs, new_actions, detach_weights=True, state_features=critic_features
        )
        with torch.no_grad():
            q_other = self.critic.single_q(
                1 - grad_twin, obs, new_actions, state_features=critic_features
            )
        q_loss = rules.normalized_q_loss(q_grad, q_other)
        lambda_used = rules.clamped_lambda(self.lambda_param, s.lambda_clip, s.lambda_max)
        return {
            "actor_loss": rules.actor_loss(
                self.lambda_param, bc_loss, q_loss, s.lambda_clip, s.lambda_max
            ),
            # Its gradient reaches lambda only (L_c detached); the actor step leaves it as is.
            "lambda_loss": rules.lambda_loss(self.lambda_param, s.kappa, bc_loss),
            "diffusion_loss": bc_loss,
            "q_loss": q_loss,
            "lambda_clamped": lambda_used,
        }

    def _actor_and_lambda_step(
        self, obs: Tensor, actions: Tensor, actor_optimizer: torch.optim.Optimizer,
        lambda_optimizer: torch.optim.Optimizer,
    ) -> dict[str, Tensor]:  # fmt: skip
        s = self.settings
        losses = self._policy_losses(obs, actions)
        actor_optimizer.zero_grad(set_to_none=True)
        losses["actor_loss"].backward()
        grad_norm = _clip_grad_norm(self.actor_params, s.grad_norm)
        actor_optimizer.step()

        lambda_optimizer.zero_grad(set_to_none=True)
        losses["lambda_loss"].backward()
        _clip_grad_norm([self.lambda_param], s.grad_norm)
        lambda_optimizer.step()
        return {
            "diffusion_loss": losses["diffusion_loss"].detach(),
            "actor_loss": losses["actor_loss"].detach(),
            "q_loss": losses["q_loss"].detach(),
            "lambda_clamped": losses["lambda_clamped"].detach(),
            "actor_grad_norm": grad_norm.detach(),
        }

    def _apply_lr_decay(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        s = self.settings
        for name in OPTIMIZER_NAMES:
            lr = rules.cosine_lr(self._base_lrs[name], self.num_steps, s.lr_decay_steps,
                                 s.lr_decay_interval)  # fmt: skip
            for group in optimizers[name].param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------------ acting --
    def _as_batch(self, obs: Tensor) -> tuple[Tensor, bool]:
        obs = host_to_device(obs, self.device)
        if obs.ndim == 1:
            return obs.unsqueeze(0), True
        return obs, False

    @torch.no_grad()
    def sample(self, obs: Tensor) -> Tensor:
        """One plain reverse-diffusion sample per state from the online actor."""
        batch, single = self._as_batch(obs)
        actions = reverse_sample(
            self.actor, self.schedule, batch, self.eval_generator, self.settings.max_action
        )
        return actions[0] if single else actions

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """Evaluation action: 50 online-actor samples per state, one drawn from softmax(Q).

        Q is the target critics' ``min(Q_1', Q_2')``; the pick is a sample at temperature 1
        (``torch.multinomial``), not the argmax, as in the implementation.
        """
        batch, single = self._as_batch(obs)
        k = self.settings.num_eval_candidates
        candidates = reverse_sample(
            self.actor, self.schedule, batch, self.eval_generator, self.settings.max_action, k
        )
        q = self.critic_target(batch, candidates).amin(dim=0).view(-1, k)
        # One host sync per evaluation step (never in training): diverged weights get a
        # sentence instead of torch.multinomial's "probability tensor contains nan".
        if not bool(torch.isfinite(q).all()):
            raise DivergedError("the target critics' Q-values are not finite: the weights "
                                "diverged")
        probs = torch.softmax(q, dim=1)
        pick = torch.multinomial(probs, 1, generator=self.eval_generator)  # (B, 1)
        index = pick.unsqueeze(-1).expand(-1, 1, self.act_dim)
        chosen = candidates.view(-1, k, self.act_dim).gather(1, index).squeeze(1)
        return chosen[0] if single else chosen

    # ------------------------------------------------------------------- checkpoints --
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors are copies).

        The optimisers' states (``<name>_optimizer``) are included when the agent owns its
        optimisers; otherwise their owner saves them.
        """
        state = {
            "version": STATE_DICT_VERSION,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "settings": self.settings.to_dict(),
            "num_steps": self.num_steps,
            "actor": copy.deepcopy(self.actor.state_dict()),
            "ema_actor": copy.deepcopy(self.ema_actor.state_dict()),
            "critic": copy.deepcopy(self.critic.state_dict()),
            "critic_target": copy.deepcopy(self.critic_target.state_dict()),
            "lambda": self.lambda_param.detach().clone(),
            "generator": generator_state(self.generator),
            "eval_generator": generator_state(self.eval_generator),
            "coin_generator": generator_state(self._coin_generator),
            "last_actor_metrics": {k: v.detach().clone() for k, v in
                                   self._last_actor_metrics.items()},
        }  # fmt: skip
        for name, optimizer in (self.optimizers or {}).items():
            state[f"{name}_optimizer"] = copy.deepcopy(optimizer.state_dict())
        return state

    def load_state_dict(
        self,
        state: dict[str, Any],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    ) -> None:
        """Restore a :meth:`state_dict` (the agent must have the same dims).

        Optimiser states in ``state`` are loaded into ``optimizers`` (default: the agent's
        own); a state without them leaves the optimisers as they are.
        """
        version = state.get("version")
        if version not in READABLE_STATE_DICT_VERSIONS:
            raise ConfigError(
                f"This DiffCPS agent state has format version {version!r}; this diffcps-ray "
                f"reads versions {', '.join(map(str, READABLE_STATE_DICT_VERSIONS))}."
            )
        if (state["obs_dim"], state["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ConfigError(
                f"Checkpoint is for obs_dim={state['obs_dim']}, act_dim={state['act_dim']}, "
                f"but this agent has obs_dim={self.obs_dim}, act_dim={self.act_dim}."
            )
        self.actor.load_state_dict(state["actor"])
        self.ema_actor.load_state_dict(state["ema_actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.lambda_param.copy_(state["lambda"])
        targets = optimizers if optimizers is not None else self.optimizers or {}
        for name, optimizer in targets.items():
            if f"{name}_optimizer" in state:
                # Optimizer.load_state_dict keeps the given moment tensors (same device and
                # dtype): copies, so that training never writes into ``state``.
                optimizer.load_state_dict(copy.deepcopy(state[f"{name}_optimizer"]))
        restore_generator(self.generator, state["generator"])
        restore_generator(self.eval_generator, state["eval_generator"])
        restore_generator(self._coin_generator, state["coin_generator"])
        self.num_steps = int(state["num_steps"])
        self._last_actor_metrics = {
            k: v.to(self.device) for k, v in state["last_actor_metrics"].items()
        }


def _unpack(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """obs, actions, rewards (B,), new_obs, not_done (B,) of a batch (see ``update``)."""
    rewards = batch["rewards"].reshape(-1)
    not_done = 1.0 - batch["terminateds"].reshape(-1).to(rewards.dtype)
    return batch["obs"], batch["actions"], rewards, batch["new_obs"], not_done
