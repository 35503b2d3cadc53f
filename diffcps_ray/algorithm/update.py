"""The DiffCPS update rules, one function per equation.

Paper equations are cited by their labels ([mu3], [eta2], ...), explained in docs/method.md.
Where the paper and the authors' implementation differ, the implementation is followed
and the docstring says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def critic_target(
    rewards: Tensor, not_done: Tensor, next_q: Tensor, gamma: float
) -> Tensor:
    """TD target of the twin critics (Algorithm 1, "Critic updating").

    ``next_q`` holds the target critics' values at next actions from the EMA actor, shape
    (2, B, k) with k next actions per next state (k = 1 without max-Q backup):

    .. math::

        y = r + \\gamma (1 - d) \\min_{j=1,2} \\max_{m=1..k} Q'_j(s', a'_m).

    With k = 1 this is the paper's ``min_j Q'_j(s', a')``. The max-Q backup (k = 10, AntMaze)
    takes the max over samples *per target critic* first, then the min of the two maxima,
    as the implementation does (the paper only names the option). The paper's Algorithm 1
    samples ``a'`` from the online policy; the implementation (followed here) samples it
    from the EMA actor.
    """
    target_q = next_q.amax(dim=-1).amin(dim=0)
    return rewards + gamma * not_done * target_q


def critic_loss(q: Tensor, target: Tensor) -> Tensor:
    """``MSE(Q_1, y) + MSE(Q_2, y)`` for ``q`` of shape (2, B) and a constant target (B,)."""
    return (q - target).square().mean(dim=1).sum()


def normalized_q_loss(q_grad: Tensor, q_other: Tensor) -> Tensor:
    """Q term of the actor loss (paper eq. [mu3]): ``-mean(Q_a) / mean(|Q_b|)``.

    The paper divides by "the target Q-net's value"; the implementation divides by the mean
    absolute value of the *other online* critic, detached, and picks which critic is
    ``Q_a`` by a fair coin each actor step. ``q_grad`` carries the gradient; ``q_other``
    only scales it.
    """
    return -q_grad.mean() / q_other.abs().mean().detach()


def clamped_lambda(lambda_param: Tensor, lambda_clip: float, lambda_max: float) -> Tensor:
    """The multiplier used in the actor loss: ``clamp(lambda, lambda_clip, lambda_max)``.

    The paper's ``lambda_clip = max(c, lambda)`` keeps lambda >= c >= 0; the implementation
    also caps it at lambda_max (100). The raw parameter itself is never clamped.
    """
    return lambda_param.clamp(lambda_clip, lambda_max)


def actor_loss(
    lambda_param: Tensor,
    diffusion_loss: Tensor,
    q_loss: Tensor,
    lambda_clip: float,
    lambda_max: float,
) -> Tensor:
    """Policy objective (paper eq. [mu3], negated for descent).

    .. math::

        \\mathcal L_\\mu = \\operatorname{clamp}(\\lambda, \\lambda_{clip}, \\lambda_{max})
            \\,\\mathcal L_c - \\frac{\\mathbb E[Q_a(s, \\tilde a)]}{\\mathbb E|Q_b(s, \\tilde a)|}

    with ``lambda`` detached (the actor does not move the multiplier).
    """
    return clamped_lambda(lambda_param, lambda_clip, lambda_max).detach() * diffusion_loss + q_loss


def lambda_loss(lambda_param: Tensor, kappa: float, diffusion_loss: Tensor) -> Tensor:
    """Dual objective (paper eq. [eta2]): ``lambda * (kappa - L_c)``, L_c detached.

    Its gradient in lambda is ``kappa - L_c``: descent raises lambda while the constraint
    is violated (L_c > kappa) and lowers it otherwise. The paper's ``lambda >= 0`` is not
    enforced on the raw parameter (the implementation clamps where lambda is used).
    """
    return (kappa - diffusion_loss.detach()) * lambda_param


@torch.no_grad()
def polyak_update_(targets: Sequence[Tensor], sources: Sequence[Tensor], tau: float) -> None:
    """Soft target update ``theta' <- (1 - tau) theta' + tau theta`` (Algorithm 1)."""
    torch._foreach_lerp_(list(targets), list(sources), tau)


@torch.no_grad()
def ema_update_(ema: Sequence[Tensor], online: Sequence[Tensor], decay: float) -> None:
    """EMA of the actor: ``theta_ema <- decay theta_ema + (1 - decay) theta``."""
    torch._foreach_lerp_(list(ema), list(online), 1.0 - decay)


def ema_due(step: int, interval: int, start_step: int) -> bool:
    """Whether the EMA actor updates at (0-based) ``step``: every ``interval`` steps from
    ``start_step`` on; before that it keeps its initial weights (the implementation's
    ``step_ema``). The paper's Algorithm 1 soft-updates the actor target every step.
    """
    return step >= start_step and step % interval == 0


def policy_step_due(step: int, freq: int) -> bool:
    """Actor and lambda update on steps 0, freq, 2 freq, ... (the paper's interval d)."""
    return step % freq == 0


def cosine_lr(base_lr: float, step: int, period_steps: int, interval: int) -> float:
    """CosineAnnealingLR(T_max=period_steps, eta_min=0) stepped once per ``interval`` steps.

    ``lr = base_lr (1 + cos(pi k / T_max)) / 2`` with ``k = step // interval``.
    """
    k = step // interval
    return base_lr * (1.0 + math.cos(math.pi * k / period_steps)) / 2.0
