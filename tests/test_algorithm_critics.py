"""The stacked twin critics are two independent MLPs, computed together."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffcps_ray.algorithm.critics import TwinCritic

OBS, ACT, H = 7, 3, 32


def _independent_mlps(seed: int) -> list[nn.Sequential]:
    torch.manual_seed(seed)
    return [
        nn.Sequential(
            nn.Linear(OBS + ACT, H), nn.Mish(), nn.Linear(H, H), nn.Mish(),
            nn.Linear(H, H), nn.Mish(), nn.Linear(H, 1),
        )
        for _ in range(2)
    ]


def _linears(mlp: nn.Sequential) -> list[nn.Linear]:
    return [m for m in mlp if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("repeats", [1, 10])
def test_stacked_critics_equal_two_independent_mlps(repeats: int) -> None:
    mlps = _independent_mlps(0)
    critic = TwinCritic(OBS, ACT, H)
    critic.load_from_mlps([_linears(m) for m in mlps])
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(8, OBS, generator=g)
    actions = torch.randn(8 * repeats, ACT, generator=g, requires_grad=True)

    q = critic(obs, actions)
    inputs = torch.cat([obs.repeat_interleave(repeats, 0), actions], dim=1)
    q_ref = torch.stack([m(inputs).squeeze(-1) for m in mlps])
    torch.testing.assert_close(q, q_ref, atol=1e-5, rtol=1e-5)

    # gradients w.r.t. every weight and the actions agree as well
    weights = torch.randn(2, 8 * repeats, generator=g)
    grads = torch.autograd.grad((q * weights).sum(), [actions, *critic.parameters()])
    grads_ref = torch.autograd.grad(
        (q_ref * weights).sum(), [actions, *[p for m in mlps for p in m.parameters()]]
    )
    torch.testing.assert_close(grads[0], grads_ref[0], atol=1e-5, rtol=1e-4)
    reference = TwinCritic(OBS, ACT, H)
    with torch.no_grad():  # pack the reference grads into the stacked layout to compare
        ref_params = iter(grads_ref[1:])
        pairs = [[(next(ref_params), next(ref_params)) for _ in range(4)] for _ in range(2)]
        fake = [[nn.Linear(1, 1) for _ in range(4)] for _ in range(2)]
        for j in range(2):
            for layer, (w, b) in zip(fake[j], pairs[j], strict=True):
                layer.weight, layer.bias = nn.Parameter(w), nn.Parameter(b)
        reference.load_from_mlps(fake)
    for ours, ref in zip(grads[1:], reference.parameters(), strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_single_twin_equals_stacked_row_and_can_skip_weight_gradients() -> None:
    critic = TwinCritic(OBS, ACT, H, generator=torch.Generator().manual_seed(0))
    obs, actions = torch.randn(5, OBS), torch.randn(5, ACT, requires_grad=True)
    q = critic(obs, actions)
    for j in range(2):
        torch.testing.assert_close(critic.single_q(j, obs, actions), q[j], atol=1e-6, rtol=1e-6)
    critic.single_q(0, obs, actions, detach_weights=True).sum().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_init_is_pytorch_default_per_twin_and_layer() -> None:
    critic = TwinCritic(OBS, ACT, 256, generator=torch.Generator().manual_seed(0))
    for j in range(2):
        for weight_t, bias in critic._twin_views(j):
            bound = 1 / math.sqrt(weight_t.shape[0])
            for values in (weight_t, bias):
                assert values.abs().max() <= bound
                # U(-b, b) has standard deviation b / sqrt(3)
                if values.numel() > 1000:
                    assert values.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    # the twins are independent draws, not copies
    assert not torch.equal(critic.w2[0], critic.w2[1])
    same = TwinCritic(OBS, ACT, 256, generator=torch.Generator().manual_seed(0))
    pairs = zip(critic.parameters(), same.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_single_twin_with_precomputed_state_features() -> None:
    critic = TwinCritic(OBS, ACT, H, generator=torch.Generator().manual_seed(3))
    obs, actions = torch.randn(9, OBS), torch.randn(9, ACT)
    features = critic.state_features(obs)
    for j in range(2):
        torch.testing.assert_close(
            critic.single_q(j, obs, actions, state_features=features),
            critic.single_q(j, obs, actions),
            atol=1e-6,
            rtol=1e-6,
        )
