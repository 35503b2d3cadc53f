"""Twin Q critics, stored stacked so both run as one batched matrix multiply.

Mathematically these are two independent MLPs on ``concat(s, a)``:
Linear(sd+ad, 256), Mish, Linear(256, 256), Mish, Linear(256, 256), Mish, Linear(256, 1),
each initialised like an independent ``nn.Linear``. Storage (weights as (in, out)):

- layer 1: ``w1`` (sd+ad, 2H), twin j in columns [jH, (j+1)H); ``b1`` (2H,). One GEMM
  computes both twins' first layers, and the state rows can be applied once to a batch of
  states shared by several actions (the max-Q backup's repeated next states).
- layers 2-4: ``w`` (2, in, out), ``b`` (2, 1, out), applied with ``torch.baddbmm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from diffcps_ray.algorithm.mish import mish

NUM_TWINS = 2


class TwinCritic(nn.Module):
    """Q_1(s, a), Q_2(s, a) as one module; ``forward`` returns shape (2, N)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_dim: int = 256,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden_dim = obs_dim, act_dim, hidden_dim
        in_dim, H = obs_dim + act_dim, hidden_dim
        self.w1 = nn.Parameter(torch.empty(in_dim, NUM_TWINS * H))
        self.b1 = nn.Parameter(torch.empty(NUM_TWINS * H))
        self.w2 = nn.Parameter(torch.empty(NUM_TWINS, H, H))
        self.b2 = nn.Parameter(torch.empty(NUM_TWINS, 1, H))
        self.w3 = nn.Parameter(torch.empty(NUM_TWINS, H, H))
        self.b3 = nn.Parameter(torch.empty(NUM_TWINS, 1, H))
        self.w4 = nn.Parameter(torch.empty(NUM_TWINS, H, 1))
        self.b4 = nn.Parameter(torch.empty(NUM_TWINS, 1, 1))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default init per twin and layer: U(+-1/sqrt(fan_in)) for w and b.

        Drawn twin by twin, layer by layer, weight before bias (as two nn.Sequential
        constructions would), with the out x in weight drawn in nn.Linear's layout.
        """
        with torch.no_grad():
            for j in range(NUM_TWINS):
                for weight_t, bias in self._twin_views(j):
                    fan_in = weight_t.shape[0]
                    bound = 1.0 / math.sqrt(fan_in)
                    w = torch.empty(weight_t.shape[1], fan_in)
                    w.uniform_(-bound, bound, generator=generator)
                    weight_t.copy_(w.t())
                    b = torch.empty(bias.numel())
                    b.uniform_(-bound, bound, generator=generator)
                    bias.copy_(b.view_as(bias))

    def _twin_views(self, j: int) -> list[tuple[Tensor, Tensor]]:
        """(weight as (in, out), bias) views of twin j's four layers."""
        H = self.hidden_dim
        return [
            (self.w1[:, j * H : (j + 1) * H], self.b1[j * H : (j + 1) * H]),
            (self.w2[j], self.b2[j]),
            (self.w3[j], self.b3[j]),
            (self.w4[j], self.b4[j]),
        ]

    @torch.no_grad()
    def load_from_mlps(self, mlps: Sequence[Sequence[nn.Linear]]) -> None:
        """Copy two independent MLPs' Linear layers (4 each) into the stacked storage."""
        for j, layers in enumerate(mlps):
            for (weight_t, bias), layer in zip(self._twin_views(j), layers, strict=True):
                weight_t.copy_(layer.weight.t())
                bias.copy_(layer.bias.view_as(bias))

    # -- evaluation -------------------------------------------------------------------------
    def state_features(self, obs: Tensor) -> Tensor:
        """Both twins' first layer on the state rows, bias included: (B, 2H)."""
        return torch.addmm(self.b1, obs, self.w1[: self.obs_dim])

    def q_from_features(self, state_features: Tensor, actions: Tensor) -> Tensor:
        """Q values (2, N) for N = B * k actions, state-major, given (B, 2H) state features."""
        n, b = actions.shape[0], state_features.shape[0]
        w_act = self.w1[self.obs_dim :]
        if n == b:
            h = torch.addmm(state_features, actions, w_act)
        else:
            h = (actions @ w_act).view(b, n // b, -1).add_(state_features.unsqueeze(1))
        h = mish(h.view(n, -1))
        # (N, 2H) -> (2, N, H) as a strided view: bmm reads it without a copy
        h = h.view(n, NUM_TWINS, self.hidden_dim).transpose(0, 1)
        h = mish(torch.baddbmm(self.b2, h, self.w2))
        h = mish(torch.baddbmm(self.b3, h, self.w3))
        return torch.baddbmm(self.b4, h, self.w4).squeeze(-1)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        """(Q_1, Q_2) stacked: shape (2, N); N may be a multiple of B (state-major)."""
        return self.q_from_features(self.state_features(obs), actions)

    def q_min(self, obs: Tensor, actions: Tensor) -> Tensor:
        """min(Q_1, Q_2): shape (N,)."""
        return self(obs, actions).amin(dim=0)

    def single_q(
        self,
        j: int,
        obs: Tensor,
        actions: Tensor,
        detach_weights: bool = False,
        state_features: Tensor | None = None,
    ) -> Tensor:
        """Q_j alone, shape (N,) with N == B.

        ``detach_weights=True`` keeps the critic's parameters off the autograd graph so a
        backward pass through the actions computes no critic gradients (actor update).
        ``state_features`` (from :meth:`state_features`, both twins) skips the state rows.
        """
        out = []
        for weight_t, bias in self._twin_views(j):
            if detach_weights:
                weight_t, bias = weight_t.detach(), bias.detach()
            out.append((weight_t, bias))
        (w1, b1), (w2, b2), (w3, b3), (w4, b4) = out
        if state_features is None:
            h = torch.addmm(b1, torch.cat([obs, actions], dim=-1), w1)
        else:
            H = self.hidden_dim
            h = torch.addmm(state_features[:, j * H : (j + 1) * H], actions, w1[self.obs_dim :])
        h = mish(h)
        h = mish(torch.addmm(b2, h, w2))
        h = mish(torch.addmm(b3, h, w3))
        return torch.addmm(b4, h, w4).squeeze(-1)
