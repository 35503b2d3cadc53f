"""DiffCPSAgent: networks, optimisers, the full training step, and action selection.

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
"""

from __future__ import annotations

import copy
import math
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
from diffcps_ray.errors import ConfigError

METRIC_NAMES = (
    "critic_loss", "diffusion_loss", "actor_loss", "q_loss", "lambda", "lambda_clamped",
    "q_mean", "critic_grad_norm", "actor_grad_norm",
)  # fmt: skip
_ACTOR_METRICS = ("diffusion_loss", "actor_loss", "q_loss", "lambda_clamped", "actor_grad_norm")
STATE_DICT_VERSION = 1


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


class DiffCPSAgent:
    """DiffCPS on torch tensors: ``update(batch)``, ``act(obs)``, ``sample(obs)``.

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
        self.actor_optimizer = _make_adam(self.actor_params, s.actor_lr, self.device)
        self.critic_optimizer = _make_adam(self.critic_params, s.critic_lr, self.device)
        self.lambda_optimizer = _make_adam([self.lambda_param], s.lambda_lr, self.device)
        self._base_lrs = (s.actor_lr, s.critic_lr, s.lambda_lr)

        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.eval_generator = torch.Generator(device=self.device).manual_seed(seed + 2)
        self._coin_generator = torch.Generator().manual_seed(seed + 3)
        self.num_steps = 0

        nan = torch.full((), math.nan, device=self.device)
        self._last_actor_metrics: dict[str, Tensor] = dict.fromkeys(_ACTOR_METRICS, nan)

    # ------------------------------------------------------------------ training step --
    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One gradient step: critic; actor and lambda when ``step % freq == 0``; targets.

        ``batch``: ``obs`` (B, obs_dim), ``actions`` (B, act_dim), ``rewards`` (B,) already
        tuned, ``new_obs`` (B, obs_dim), ``terminateds`` (B,) as float 0/1; all float32 on
        the agent's device. Returns detached 0-dim tensors named in ``METRIC_NAMES``;
        the actor's entries (``diffusion_loss, actor_loss, q_loss, lambda_clamped,
        actor_grad_norm``) come from the last actor step, ``lambda`` is the raw multiplier
        after this step, ``q_mean`` the online critics' mean Q on the batch before it.
        """
        s = self.settings
        obs = batch["obs"]
        actions = batch["actions"]
        rewards = batch["rewards"].reshape(-1)
        next_obs = batch["new_obs"]
        not_done = 1.0 - batch["terminateds"].reshape(-1).to(rewards.dtype)
        step = self.num_steps

        metrics = self._critic_step(obs, actions, rewards, next_obs, not_done)
        if rules.policy_step_due(step, s.freq):
            self._last_actor_metrics = self._actor_and_lambda_step(obs, actions)
        metrics.update(self._last_actor_metrics)
        metrics["lambda"] = self.lambda_param.detach().clone()

        rules.polyak_update_(self.critic_target.parameters(), self.critic_params, s.tau)
        if rules.ema_due(step, s.ema_interval, s.ema_start_step):
            rules.ema_update_(self.ema_actor.parameters(), self.actor_params, s.ema_decay)
        self.num_steps += 1
        if s.lr_decay:
            self._apply_lr_decay()
        return metrics

    def _critic_step(
        self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, not_done: Tensor
    ) -> dict[str, Tensor]:
        s = self.settings
        k = s.num_backup_samples if s.max_q_backup else 1
        with torch.no_grad():
            next_actions = reverse_sample(
                self.ema_actor, self.schedule, next_obs, self.generator, s.max_action, k
            )
            next_q = self.critic_target(next_obs, next_actions).view(NUM_TWINS, -1, k)
            target = rules.critic_target(rewards, not_done, next_q, s.gamma)

        q = self.critic(obs, actions)
        loss = rules.critic_loss(q, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _clip_grad_norm(self.critic_params, s.grad_norm)
        self.critic_optimizer.step()
        return {
            "critic_loss": loss.detach(),
            "q_mean": q.detach().mean(),
            "critic_grad_norm": grad_norm.detach(),
        }

    def _actor_and_lambda_step(self, obs: Tensor, actions: Tensor) -> dict[str, Tensor]:
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
        loss = rules.actor_loss(self.lambda_param, bc_loss, q_loss, s.lambda_clip, s.lambda_max)

        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _clip_grad_norm(self.actor_params, s.grad_norm)
        self.actor_optimizer.step()

        dual_loss = rules.lambda_loss(self.lambda_param, s.kappa, bc_loss)
        self.lambda_optimizer.zero_grad(set_to_none=True)
        dual_loss.backward()
        _clip_grad_norm([self.lambda_param], s.grad_norm)
        self.lambda_optimizer.step()
        return {
            "diffusion_loss": bc_loss.detach(),
            "actor_loss": loss.detach(),
            "q_loss": q_loss.detach(),
            "lambda_clamped": lambda_used.detach(),
            "actor_grad_norm": grad_norm.detach(),
        }

    def _apply_lr_decay(self) -> None:
        s = self.settings
        optimizers = (self.actor_optimizer, self.critic_optimizer, self.lambda_optimizer)
        for optimizer, base_lr in zip(optimizers, self._base_lrs, strict=True):
            lr = rules.cosine_lr(base_lr, self.num_steps, s.lr_decay_steps, s.lr_decay_interval)
            for group in optimizer.param_groups:
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
        probs = torch.softmax(q, dim=1)
        pick = torch.multinomial(probs, 1, generator=self.eval_generator)  # (B, 1)
        index = pick.unsqueeze(-1).expand(-1, 1, self.act_dim)
        chosen = candidates.view(-1, k, self.act_dim).gather(1, index).squeeze(1)
        return chosen[0] if single else chosen

    # ------------------------------------------------------------------- checkpoints --
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (tensors are copies)."""
        return {
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
            "actor_optimizer": copy.deepcopy(self.actor_optimizer.state_dict()),
            "critic_optimizer": copy.deepcopy(self.critic_optimizer.state_dict()),
            "lambda_optimizer": copy.deepcopy(self.lambda_optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "eval_generator": self.eval_generator.get_state(),
            "coin_generator": self._coin_generator.get_state(),
            "last_actor_metrics": {k: v.detach().clone() for k, v in
                                   self._last_actor_metrics.items()},
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the agent must have the same dims)."""
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
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.lambda_optimizer.load_state_dict(state["lambda_optimizer"])
        # Generator states are CPU byte tensors even for CUDA generators.
        self.generator.set_state(state["generator"].cpu())
        self.eval_generator.set_state(state["eval_generator"].cpu())
        self._coin_generator.set_state(state["coin_generator"].cpu())
        self.num_steps = int(state["num_steps"])
        self._last_actor_metrics = {
            k: v.to(self.device) for k, v in state["last_actor_metrics"].items()
        }
