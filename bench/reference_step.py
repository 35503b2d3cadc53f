"""A straightforward DiffCPS training step, written from docs/method.md without any
speed work: nn.Sequential networks with nn.Mish, concatenated inputs, two separate
critics, repeated next states for the max-Q backup, default Adam, Polyak by a Python loop.

It is the baseline that ``bench/train_step.py`` times interleaved with
``DiffCPSAgent.update`` (same mathematics, same shapes), so the reported speedup does not
depend on the machine's load at the moment. It is not used by the package.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _mlp(in_dim: int, out_dim: int, hidden: int = 256) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.Mish(), nn.Linear(hidden, hidden), nn.Mish(),
        nn.Linear(hidden, hidden), nn.Mish(), nn.Linear(hidden, out_dim),
    )  # fmt: skip


class _TimeEmbedding(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.Mish(), nn.Linear(2 * dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000) / (half - 1)))
        angles = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


class _Denoiser(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.time = _TimeEmbedding(16)
        self.body = _mlp(act_dim + 16 + obs_dim, act_dim)

    def forward(self, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        return self.body(torch.cat([x, self.time(t), s], dim=-1))


class ReferenceDiffusion(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, T: int = 5, max_action: float = 1.0) -> None:
        super().__init__()
        self.model = _Denoiser(obs_dim, act_dim)
        self.T, self.act_dim, self.max_action = T, act_dim, max_action
        i = torch.arange(1, T + 1, dtype=torch.float32)
        betas = 1 - torch.exp(-0.1 / T - 0.5 * (10 - 0.1) * (2 * i - 1) / T**2)
        alphas = 1 - betas
        ab = torch.cumprod(alphas, 0)
        ab_prev = torch.cat([torch.ones(1), ab[:-1]])
        var = betas * (1 - ab_prev) / (1 - ab)
        for name, value in {
            "sqrt_ab": ab.sqrt(), "sqrt_1m_ab": (1 - ab).sqrt(),
            "sqrt_recip_ab": (1 / ab).sqrt(), "sqrt_recipm1_ab": (1 / ab - 1).sqrt(),
            "coef1": betas * ab_prev.sqrt() / (1 - ab),
            "coef2": (1 - ab_prev) * alphas.sqrt() / (1 - ab),
            "log_var": torch.log(var.clamp(min=1e-20)),
        }.items():  # fmt: skip
            self.register_buffer(name, value)

    def sample(self, s: Tensor) -> Tensor:
        b = s.shape[0]
        x = torch.randn(b, self.act_dim, device=s.device)
        for i in reversed(range(self.T)):
            t = torch.full((b,), i, device=s.device, dtype=torch.long)
            eps = self.model(x, t, s)
            x0 = (self.sqrt_recip_ab[t, None] * x - self.sqrt_recipm1_ab[t, None] * eps).clamp(
                -self.max_action, self.max_action
            )
            mean = self.coef1[t, None] * x0 + self.coef2[t, None] * x
            nonzero = (t != 0).float()[:, None]
            x = mean + nonzero * (0.5 * self.log_var[t, None]).exp() * torch.randn_like(x)
        return x.clamp(-self.max_action, self.max_action)

    def loss(self, a: Tensor, s: Tensor) -> Tensor:
        t = torch.randint(0, self.T, (a.shape[0],), device=a.device)
        eps = torch.randn_like(a)
        x = self.sqrt_ab[t, None] * a + self.sqrt_1m_ab[t, None] * eps
        return F.mse_loss(self.model(x, t, s), eps)


class ReferenceCritic(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.q1 = _mlp(obs_dim + act_dim, 1)
        self.q2 = _mlp(obs_dim + act_dim, 1)

    def forward(self, s: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([s, a], dim=-1)
        return self.q1(x), self.q2(x)


class ReferenceAgent:
    """One DiffCPS step per ``update(batch)``, unoptimised (mirrors the authors' layout)."""

    def __init__(self, obs_dim: int, act_dim: int, settings, device: str = "cpu") -> None:
        self.s = settings
        self.actor = ReferenceDiffusion(obs_dim, act_dim, settings.T).to(device)
        self.ema = copy.deepcopy(self.actor)
        self.critic = ReferenceCritic(obs_dim, act_dim).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.lam = torch.tensor(settings.lambda_init, device=device, requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=settings.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=settings.critic_lr)
        self.lam_opt = torch.optim.Adam([self.lam], lr=settings.lambda_lr)
        self.step = 0

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        s = self.s
        obs, act = batch["obs"], batch["actions"]
        rew = batch["rewards"].reshape(-1, 1)
        nxt = batch["new_obs"]
        not_done = 1 - batch["terminateds"].reshape(-1, 1)
        b = obs.shape[0]
        q1, q2 = self.critic(obs, act)
        if s.max_q_backup:
            k = s.num_backup_samples
            nxt_rpt = torch.repeat_interleave(nxt, k, dim=0)
            nxt_act = self.ema.sample(nxt_rpt)
            t1, t2 = self.critic_target(nxt_rpt, nxt_act)
            target = torch.min(t1.view(b, k).max(1, keepdim=True)[0],
                               t2.view(b, k).max(1, keepdim=True)[0])  # fmt: skip
        else:
            nxt_act = self.ema.sample(nxt)
            t1, t2 = self.critic_target(nxt, nxt_act)
            target = torch.min(t1, t2)
        target = (rew + not_done * s.gamma * target).detach()
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), s.grad_norm)
        self.critic_opt.step()

        out = {"critic_loss": critic_loss.detach()}
        if self.step % s.freq == 0:
            bc = self.actor.loss(act, obs)
            new_act = self.actor.sample(obs)
            n1, n2 = self.critic(obs, new_act)
            if torch.rand(()) > 0.5:
                q_loss = -n1.mean() / n2.abs().mean().detach()
            else:
                q_loss = -n2.mean() / n1.abs().mean().detach()
            lam = self.lam.clamp(s.lambda_clip, s.lambda_max).detach()
            actor_loss = lam * bc + q_loss
            self.actor_opt.zero_grad()
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), s.grad_norm)
            self.actor_opt.step()
            lam_loss = (s.kappa - bc.detach()) * self.lam
            self.lam_opt.zero_grad()
            lam_loss.backward()
            nn.utils.clip_grad_norm_([self.lam], s.grad_norm)
            self.lam_opt.step()
            out["actor_loss"] = actor_loss.detach()
        if self.step % s.ema_interval == 0 and self.step >= s.ema_start_step:
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.actor.parameters(), strict=True):
                    pe.copy_(s.ema_decay * pe + (1 - s.ema_decay) * p)
        with torch.no_grad():
            pairs = zip(self.critic_target.parameters(), self.critic.parameters(), strict=True)
            for pt, p in pairs:
                pt.copy_(s.tau * p + (1 - s.tau) * pt)
        self.step += 1
        return out
