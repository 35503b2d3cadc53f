"""Mish with one exponential and a hand-written backward.

``mish(x) = x * tanh(softplus(x))``. With ``e = exp(x)`` and ``n = e * (e + 2)``,

.. math::

    \\tanh(\\operatorname{softplus}(x)) = \\frac{(1 + e)^2 - 1}{(1 + e)^2 + 1}
                                       = \\frac{n}{n + 2},

so ``mish(x) = x * n / (n + 2)`` needs a single ``exp`` instead of ``exp``, ``log1p`` and
``tanh`` (transcendentals are the slow part on small CPUs, see docs/performance.md).
The derivative, with ``d = 1 / (n + 2)`` and ``t = n d``:

.. math::

    \\frac{d}{dx}\\operatorname{mish}(x) = t + x\\,\\operatorname{sech}^2(\\operatorname{sp}(x))
        \\,\\sigma(x) = t + 4\\,x\\,e\\,(e + 1)\\,d^2.

Overflow guard: ``e`` is computed from ``min(x, 20)``. At ``x = 20`` the ratio ``n/(n+2)``
is already 1 in float32 (and the second derivative term ~1e-16), so clamping changes
nothing that float32 can represent while keeping ``n`` (about 2e17) finite; the derivative
term uses the clamped ``x`` too, so a huge ``x`` cannot produce ``inf * 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# exp(20)^2 ~ 2.4e17: finite in float32, and n / (n + 2) rounds to exactly 1 there.
MISH_EXP_LIMIT = 20.0


def _mish_forward(x: Tensor) -> Tensor:
    """mish(x) without the derivative: 8 elementwise passes, 2 allocations.

    The same operations in the same order as the autograd path, so both agree bitwise.
    """
    e = x.clamp(max=MISH_EXP_LIMIT).exp_()
    n = e + 2.0
    n.mul_(e)  # n = e^2 + 2e
    d = torch.add(n, 2.0, out=e).reciprocal_()  # e is no longer needed: reuse its storage
    return n.mul_(d).mul_(x)  # x * n / (n + 2)


class _MishFunction(torch.autograd.Function):
    """Forward computes the output and the local derivative; backward is one multiply."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        x_clamped = x.clamp(max=MISH_EXP_LIMIT)
        e = torch.exp(x_clamped)
        n = e + 2.0
        n.mul_(e)  # n = e^2 + 2e
        d = n + 2.0
        d.reciprocal_()
        t = n * d  # tanh(softplus(x))
        out = x * t
        # derivative = t + 4 x e (e + 1) d^2, and e (e + 1) = n - e
        q = n.sub_(e).mul_(d).mul_(d)
        derivative = torch.addcmul(t, x_clamped, q, value=4.0)
        ctx.save_for_backward(derivative)
        return out

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        (derivative,) = ctx.saved_tensors
        return grad_output * derivative


def mish(x: Tensor) -> Tensor:
    """Mish activation, numerically equal to ``F.mish`` (max error ~1e-6 in float32).

    Falls back to ``F.mish`` for dtypes where the ``exp(20)`` guard would overflow
    (half precision). Without autograd only the forward is computed.
    """
    if x.dtype not in (torch.float32, torch.float64):
        return F.mish(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MishFunction.apply(x)
    return _mish_forward(x)


class Mish(nn.Module):
    """Module wrapper of :func:`mish`."""

    def forward(self, x: Tensor) -> Tensor:
        return mish(x)
