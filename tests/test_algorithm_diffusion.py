"""The diffusion policy's mathematics: schedule, posterior, Mish, L_c, the sampler."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from diffcps_ray.algorithm.diffusion import (
    DiffusionSchedule,
    NoiseModel,
    diffusion_loss,
    reverse_sample,
    sinusoidal_time_embedding,
    vp_beta_schedule,
)
from diffcps_ray.algorithm.mish import MISH_EXP_LIMIT, mish


def test_vp_schedule_for_t5_matches_spec_numbers() -> None:
    betas = vp_beta_schedule(5)
    alpha_bars = torch.cumprod(1 - betas, dim=0)
    spec_betas = [0.19587, 0.45882, 0.63578, 0.75488, 0.83503]
    spec_alpha_bars = [0.80413, 0.43518, 0.15850, 0.03885, 0.00641]
    assert betas.tolist() == pytest.approx(spec_betas, abs=5e-6)
    assert alpha_bars.tolist() == pytest.approx(spec_alpha_bars, abs=5e-6)


@pytest.mark.parametrize("T", [1, 2, 5, 20])
def test_vp_schedule_is_the_papers_formula(T: int) -> None:
    i = torch.arange(1, T + 1, dtype=torch.float64)
    expected = 1 - torch.exp(-0.1 / T - 0.5 * (10 - 0.1) * (2 * i - 1) / T**2)
    torch.testing.assert_close(vp_beta_schedule(T), expected)


@pytest.mark.parametrize("T", [2, 5, 20])
def test_posterior_matches_gaussian_conditioning(T: int) -> None:
    """q(x_{i-1} | x_i, x_0) by completing the square, from the two forward Gaussians."""
    s = DiffusionSchedule(T).double()
    betas = vp_beta_schedule(T)
    alphas = 1 - betas
    alpha_bars = torch.cumprod(alphas, 0)
    for i in range(1, T):
        prev = alpha_bars[i - 1]
        # q(x_{i-1}|x_0) = N(sqrt(prev) x0, 1 - prev)
        # q(x_i|x_{i-1}) = N(sqrt(alpha_i) x_{i-1}, beta_i)
        precision = 1 / (1 - prev) + alphas[i] / betas[i]
        var = 1 / precision
        coef_x0 = var * prev.sqrt() / (1 - prev)
        coef_xt = var * alphas[i].sqrt() / betas[i]
        assert s.posterior_variance[i].item() == pytest.approx(var.item(), rel=1e-6)
        assert s.posterior_mean_coef1[i].item() == pytest.approx(coef_x0.item(), rel=1e-6)
        assert s.posterior_mean_coef2[i].item() == pytest.approx(coef_xt.item(), rel=1e-6)
        assert s.posterior_std_list[i] == pytest.approx(math.sqrt(var.item()), rel=1e-6)
    # i = 0 (the last reverse step): x_{-1} is x_0 itself
    assert s.posterior_mean_coef1[0].item() == pytest.approx(1.0)
    assert s.posterior_mean_coef2[0].item() == pytest.approx(0.0)
    assert s.posterior_log_variance_clipped[0].item() == pytest.approx(math.log(1e-20))


def test_x0_estimate_inverts_the_forward_process() -> None:
    s = DiffusionSchedule(5)
    g = torch.Generator().manual_seed(0)
    a, eps = torch.randn(64, 3, generator=g), torch.randn(64, 3, generator=g)
    for i in range(5):
        steps = torch.full((64,), i)
        x_i = s.q_sample(a, steps, eps)
        x0 = s.sqrt_recip_alpha_bars[i] * x_i - s.sqrt_recipm1_alpha_bars[i] * eps
        torch.testing.assert_close(x0, a, atol=2e-4, rtol=0)


def test_sinusoidal_embedding_frequencies() -> None:
    emb = sinusoidal_time_embedding(torch.tensor([0, 3]), 16)
    freqs = torch.exp(-torch.arange(8) * math.log(10000) / 7)
    torch.testing.assert_close(emb[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    torch.testing.assert_close(emb[1], torch.cat([torch.sin(3 * freqs), torch.cos(3 * freqs)]))


# --- Mish ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mish_equals_torch_mish_values_and_gradients(dtype: torch.dtype) -> None:
    x = torch.cat([
        torch.linspace(-60, 60, 4001, dtype=dtype),
        torch.tensor([-1e4, -100.0, -88.0, 19.9, 20.0, 20.1, 45.0, 89.0, 1e4, 1e30], dtype=dtype),
    ]).requires_grad_()  # fmt: skip
    ours = mish(x)
    (grad_ours,) = torch.autograd.grad(ours, x, torch.ones_like(x))
    ref = F.mish(x)
    (grad_ref,) = torch.autograd.grad(ref, x, torch.ones_like(x))
    assert torch.isfinite(ours).all() and torch.isfinite(grad_ours).all()
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(grad_ours, grad_ref, atol=2e-6, rtol=1e-6)
    assert x.detach()[-1] > MISH_EXP_LIMIT and grad_ours[-1].item() == pytest.approx(1.0)


def test_mish_without_autograd_equals_with_autograd() -> None:
    x = torch.randn(300, 7) * 5
    with torch.no_grad():
        plain = mish(x)
    torch.testing.assert_close(plain, mish(x.requires_grad_()).detach(), atol=0, rtol=0)


def test_mish_gradcheck_float64() -> None:
    x = (torch.randn(50, dtype=torch.float64) * 4).requires_grad_()
    assert torch.autograd.gradcheck(mish, (x,))


# --- L_c -------------------------------------------------------------------------------
def test_diffusion_loss_of_a_perfect_noise_model_is_zero() -> None:
    s = DiffusionSchedule(5)
    g = torch.Generator().manual_seed(1)
    actions = torch.rand(512, 4, generator=g) * 2 - 1

    def perfect(noisy: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        # recovers eps exactly from x_i = sqrt(ab) a + sqrt(1 - ab) eps
        scale = s.sqrt_alpha_bars[steps].unsqueeze(-1)
        return (noisy - scale * actions) / s.sqrt_one_minus_alpha_bars[steps].unsqueeze(-1)

    assert diffusion_loss(perfect, s, actions, g).item() == pytest.approx(0.0, abs=1e-8)
    # A model that predicts 0 pays E[eps^2] = 1 per dimension (the per-dimension scale).
    zero = diffusion_loss(lambda x, t: torch.zeros_like(x), s, actions, g)
    assert zero.item() == pytest.approx(1.0, abs=0.06)


# --- noise model and sampler -------------------------------------------------------------
def _model(obs_dim: int = 5, act_dim: int = 3, T: int = 5, seed: int = 0) -> NoiseModel:
    generator = torch.Generator().manual_seed(seed)
    return NoiseModel(obs_dim, act_dim, T, hidden_dim=32, generator=generator)


@pytest.mark.parametrize("repeats", [1, 4])
def test_factorised_noise_model_equals_the_literal_concat_mlp(repeats: int) -> None:
    model = _model()
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(6, 5, generator=g)
    x = torch.randn(6 * repeats, 3, generator=g)
    steps = torch.randint(0, 5, (6 * repeats,), generator=g)
    literal = model(x, steps, obs.repeat_interleave(repeats, 0))
    if repeats == 1:
        cond = model.state_features(obs) + model.time_features()[steps]
        fast = model.eps_from_features(x, cond)
    else:  # one step shared by the repeats (as in the sampler)
        steps = torch.full_like(steps, 2)
        literal = model(x, steps, obs.repeat_interleave(repeats, 0))
        fast = model.eps_from_features(x, model.state_features(obs) + model.time_features()[2])
    torch.testing.assert_close(fast, literal, atol=1e-5, rtol=1e-5)


def _literal_sampler(model, s, obs, g, max_action):
    """The implementation's p_sample_loop written out, drawing noise in the same order."""
    x = torch.randn(obs.shape[0], model.act_dim, generator=g)
    for i in reversed(range(s.n_timesteps)):
        steps = torch.full((obs.shape[0],), i)
        eps = model(x, steps, obs)
        x0 = (s.sqrt_recip_alpha_bars[i] * x - s.sqrt_recipm1_alpha_bars[i] * eps)
        x0 = x0.clamp(-max_action, max_action)
        mean = s.posterior_mean_coef1[i] * x0 + s.posterior_mean_coef2[i] * x
        if i > 0:
            z = torch.randn(x.shape, generator=g)
            x = mean + torch.exp(0.5 * s.posterior_log_variance_clipped[i]) * z
        else:
            x = mean
    return x.clamp(-max_action, max_action)


@pytest.mark.parametrize("T", [1, 5])
def test_sampler_equals_literal_reverse_chain_with_gradients(T: int) -> None:
    model, s = _model(T=T), DiffusionSchedule(T)
    obs = torch.randn(16, 5, generator=torch.Generator().manual_seed(3))
    fast = reverse_sample(model, s, obs, torch.Generator().manual_seed(9), max_action=1.0)
    literal = _literal_sampler(model, s, obs, torch.Generator().manual_seed(9), 1.0)
    torch.testing.assert_close(fast, literal, atol=1e-5, rtol=1e-5)
    assert fast.abs().max() <= 1.0
    # The policy-improvement term backpropagates through every denoising step.
    params = list(model.parameters())
    grads_fast = torch.autograd.grad(fast.square().sum(), params)
    grads_literal = torch.autograd.grad(literal.square().sum(), params)
    for gf, gl in zip(grads_fast, grads_literal, strict=True):
        torch.testing.assert_close(gf, gl, atol=1e-4, rtol=1e-4)
    assert model.time_fc1.weight in params and grads_fast[0].abs().sum() > 0


def test_sampler_clamps_to_max_action() -> None:
    model, s = _model(), DiffusionSchedule(5)
    with torch.no_grad():
        model.out.bias.fill_(50.0)  # drives eps_hat, hence x0_hat, far outside the box
    actions = reverse_sample(model, s, torch.randn(32, 5), torch.Generator().manual_seed(0), 0.5)
    assert actions.abs().max().item() <= 0.5
