"""The update rules, one equation at a time."""

from __future__ import annotations

import math

import pytest
import torch

from diffcps_ray.algorithm import update as rules


def test_critic_target_without_max_q_is_min_of_twins() -> None:
    next_q = torch.tensor([[[3.0], [1.0]], [[2.0], [5.0]]])  # (2 twins, B=2, k=1)
    y = rules.critic_target(torch.tensor([1.0, 0.5]), torch.tensor([1.0, 0.0]), next_q, 0.9)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 2.0, 0.5]))


def test_max_q_backup_takes_max_per_critic_then_min() -> None:
    # Q1 over two samples [1, 5], Q2 [4, 2]: max per critic (5, 4) then min -> 4.
    # (min per sample then max would give max(1, 2) = 2.)
    next_q = torch.tensor([[[1.0, 5.0]], [[4.0, 2.0]]])
    y = rules.critic_target(torch.tensor([0.0]), torch.tensor([1.0]), next_q, 0.99)
    assert y.item() == pytest.approx(0.99 * 4.0)


def test_critic_loss_is_sum_of_two_mses() -> None:
    q = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    y = torch.tensor([1.5, 2.0])
    expected = ((0.5**2 + 0) / 2) + ((1.5**2 + 2.0**2) / 2)
    assert rules.critic_loss(q, y).item() == pytest.approx(expected)


def test_normalized_q_loss_value_and_gradient_path() -> None:
    q_grad = torch.tensor([2.0, 4.0], requires_grad=True)
    q_other = torch.tensor([-1.0, 3.0], requires_grad=True)
    loss = rules.normalized_q_loss(q_grad, q_other)
    assert loss.item() == pytest.approx(-3.0 / 2.0)
    loss.backward()
    torch.testing.assert_close(q_grad.grad, torch.tensor([-0.25, -0.25]))
    assert q_other.grad is None  # the normaliser is a constant


@pytest.mark.parametrize(
    ("raw", "lambda_clip", "lambda_max", "used"),
    [
        (-2.0, 0.0, 100.0, 0.0),
        (0.1, 0.3, 100.0, 0.3),
        (2.0, 0.3, 100.0, 2.0),
        (500.0, 0.3, 100.0, 100.0),
    ],
)
def test_lambda_is_never_used_outside_its_clamp(
    raw: float, lambda_clip: float, lambda_max: float, used: float
) -> None:
    lam = torch.tensor(raw, requires_grad=True)
    l_c = torch.tensor(0.7, requires_grad=True)
    q_loss = torch.tensor(-1.0)
    loss = rules.actor_loss(lam, l_c, q_loss, lambda_clip, lambda_max)
    assert loss.item() == pytest.approx(used * 0.7 - 1.0)
    loss.backward()
    assert lam.grad is None  # the actor does not move lambda
    assert l_c.grad.item() == pytest.approx(used)


@pytest.mark.parametrize(("l_c", "direction"), [(0.5, 1), (0.01, -1)])
def test_dual_step_raises_lambda_iff_constraint_violated(l_c: float, direction: int) -> None:
    """kappa = 0.1: L_c > kappa must raise lambda, L_c < kappa must lower it."""
    lam = torch.tensor(1.0, requires_grad=True)
    optimizer = torch.optim.Adam([lam], lr=3e-5)
    for _ in range(3):
        optimizer.zero_grad()
        loss = rules.lambda_loss(lam, 0.1, torch.tensor(l_c, requires_grad=True))
        loss.backward()
        assert lam.grad.item() == pytest.approx(0.1 - l_c)
        optimizer.step()
    assert math.copysign(1, lam.item() - 1.0) == direction


def test_polyak_and_ema_are_lerps() -> None:
    target, source = [torch.tensor([0.0, 10.0])], [torch.tensor([1.0, 0.0])]
    rules.polyak_update_(target, source, 0.005)
    torch.testing.assert_close(target[0], torch.tensor([0.005, 9.95]))
    ema = [torch.tensor([1.0])]
    rules.ema_update_(ema, [torch.tensor([0.0])], 0.995)
    torch.testing.assert_close(ema[0], torch.tensor([0.995]))


def test_schedules_of_ema_and_policy_steps() -> None:
    ema_steps = [s for s in range(1016) if rules.ema_due(s, 5, 1000)]
    assert ema_steps == [1000, 1005, 1010, 1015]
    assert [s for s in range(9) if rules.policy_step_due(s, 4)] == [0, 4, 8]


def test_cosine_lr_steps_once_per_interval() -> None:
    assert rules.cosine_lr(1.0, 49_999, 2000, 50_000) == 1.0
    assert rules.cosine_lr(1.0, 50_000, 2000, 50_000) == pytest.approx(
        (1 + math.cos(math.pi / 2000)) / 2
    )
    assert rules.cosine_lr(1.0, 1000 * 50_000, 2000, 50_000) == pytest.approx(0.5)
