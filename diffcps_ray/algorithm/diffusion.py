"""The diffusion policy: vp noise schedule, noise model eps(a_i, s, i), sampler, L_c.

Notation (paper section "Diffusion Model Based Policy"): steps are indexed 0..T-1 in the
code (the paper's i = 1..T); ``alpha_bar_i = prod_{j<=i} (1 - beta_j)``.

Speed without changing the mathematics: the noise model's first layer acts on
``concat(a_i, t_emb(i), s)``, so ``W [a; t; s] + b = W_a a + (W_t t_emb(i)) + (W_s s + b)``.
The state part is projected once per batch (shared by the T reverse steps and by L_c), and
the time part once for the T possible steps (see docs/performance.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffcps_ray.algorithm.mish import mish

# The implementation clips the posterior variance before its log (Diffusion-QL).
POSTERIOR_VARIANCE_FLOOR = 1e-20


def vp_beta_schedule(n_timesteps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> Tensor:
    """Variance-preserving discrete schedule (paper, eq. after [reverse_sampling]).

    .. math::

        \\beta_i = 1 - \\exp\\Big(-\\frac{\\beta_{min}}{T}
                   - \\frac{1}{2}(\\beta_{max} - \\beta_{min})\\frac{2i - 1}{T^2}\\Big),
        \\quad i = 1..T.

    Returned in float64; for T=5: [0.19587, 0.45882, 0.63578, 0.75488, 0.83503].
    """
    if n_timesteps < 1:
        raise ValueError(f"n_timesteps must be at least 1, got {n_timesteps}.")
    T = n_timesteps
    i = torch.arange(1, T + 1, dtype=torch.float64)
    log_alpha = -beta_min / T - 0.5 * (beta_max - beta_min) * (2 * i - 1) / T**2
    return 1.0 - torch.exp(log_alpha)


class DiffusionSchedule(nn.Module):
    """The schedule's per-step coefficients, as (non-persistent) float32 buffers and floats.

    For step index i (0-based), with ``alpha_bar_{-1} = 1``:

    - forward process: ``x_i = sqrt(alpha_bar_i) a + sqrt(1 - alpha_bar_i) eps``;
    - x0 estimate: ``x0 = sqrt(1/alpha_bar_i) x_i - sqrt(1/alpha_bar_i - 1) eps_hat``;
    - posterior q(x_{i-1} | x_i, x0) = N(coef1_i x0 + coef2_i x_i, var_i) with
      ``coef1 = beta_i sqrt(alpha_bar_{i-1}) / (1 - alpha_bar_i)``,
      ``coef2 = (1 - alpha_bar_{i-1}) sqrt(alpha_i) / (1 - alpha_bar_i)``,
      ``var = beta_i (1 - alpha_bar_{i-1}) / (1 - alpha_bar_i)``;
      the sampler's standard deviation is ``exp(0.5 log(max(var, 1e-20)))``.

    The coefficients are computed in float64 and rounded once to float32; the Python-float
    copies (``*_list``) let the sampler multiply by scalars without indexing tensors.
    """

    def __init__(self, n_timesteps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> None:
        super().__init__()
        self.n_timesteps = n_timesteps
        betas = vp_beta_schedule(n_timesteps, beta_min, beta_max)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        posterior_variance = betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)
        log_var = torch.log(posterior_variance.clamp(min=POSTERIOR_VARIANCE_FLOOR))
        coefficients = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": alpha_bars,
            "alpha_bars_prev": alpha_bars_prev,
            "sqrt_alpha_bars": alpha_bars.sqrt(),
            "sqrt_one_minus_alpha_bars": (1.0 - alpha_bars).sqrt(),
            "sqrt_recip_alpha_bars": (1.0 / alpha_bars).sqrt(),
            "sqrt_recipm1_alpha_bars": (1.0 / alpha_bars - 1.0).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": log_var,
            "posterior_std": torch.exp(0.5 * log_var),
            "posterior_mean_coef1": betas * alpha_bars_prev.sqrt() / (1.0 - alpha_bars),
            "posterior_mean_coef2": (1.0 - alpha_bars_prev) * alphas.sqrt() / (1.0 - alpha_bars),
        }
        for name, values in coefficients.items():
            self.register_buffer(name, values.to(torch.float32), persistent=False)
            # float32-rounded Python floats: the same numbers the buffers hold
            setattr(self, f"{name}_list", values.to(torch.float32).tolist())

    def q_sample(self, actions: Tensor, steps: Tensor, noise: Tensor) -> Tensor:
        """Forward process: ``x_i = sqrt(alpha_bar_i) a + sqrt(1 - alpha_bar_i) eps``."""
        scale = self.sqrt_alpha_bars[steps].unsqueeze(-1)
        noise_scale = self.sqrt_one_minus_alpha_bars[steps].unsqueeze(-1)
        return torch.addcmul(noise_scale * noise, scale, actions)


def sinusoidal_time_embedding(steps: Tensor, dim: int) -> Tensor:
    """Transformer-style embedding of integer steps (the implementation's SinusoidalPosEmb).

    ``freq_k = exp(-k ln(10000) / (dim/2 - 1))``, k = 0..dim/2-1;
    ``emb(i) = [sin(i freq), cos(i freq)]``.
    """
    half = dim // 2
    k = torch.arange(half, device=steps.device, dtype=torch.float32)
    freqs = torch.exp(k * (-math.log(10000.0) / (half - 1)))
    angles = steps.to(torch.float32).unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def init_linear_(layer: nn.Linear, generator: torch.Generator | None) -> nn.Linear:
    """PyTorch's default nn.Linear initialisation, drawn from ``generator``.

    kaiming_uniform(a=sqrt(5)) for the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    the bias; both reduce to U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


class NoiseModel(nn.Module):
    """eps_theta(a_i, s, i): the Diffusion-QL MLP (3 hidden layers of 256, Mish).

    ``t_emb = Linear(32,16)(Mish(Linear(16,32)(sinusoid(i))))``; body on
    ``concat(a_i, t_emb, s)``: Linear(ad+16+sd, 256), Mish, Linear(256,256), Mish,
    Linear(256,256), Mish, Linear(256, ad); no output activation.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_timesteps: int,
        hidden_dim: int = 256,
        time_embed_dim: int = 16,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.n_timesteps, self.time_embed_dim = n_timesteps, time_embed_dim
        self.time_fc1 = nn.Linear(time_embed_dim, 2 * time_embed_dim)
        self.time_fc2 = nn.Linear(2 * time_embed_dim, time_embed_dim)
        self.fc1 = nn.Linear(act_dim + time_embed_dim + obs_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, act_dim)
        for layer in (self.time_fc1, self.time_fc2, self.fc1, self.fc2, self.fc3, self.out):
            init_linear_(layer, generator)
        steps = torch.arange(n_timesteps)
        self.register_buffer(
            "step_sinusoids", sinusoidal_time_embedding(steps, time_embed_dim), persistent=False
        )

    # -- the plain definition (used by tests as the reference) ---------------------------
    def forward(self, noisy_actions: Tensor, steps: Tensor, obs: Tensor) -> Tensor:
        """eps_hat for each row, computed literally as the paper/implementation writes it."""
        t_emb = sinusoidal_time_embedding(steps, self.time_embed_dim)
        t_emb = self.time_fc2(F.mish(self.time_fc1(t_emb)))
        h = torch.cat([noisy_actions, t_emb, obs], dim=-1)
        h = F.mish(self.fc1(h))
        h = F.mish(self.fc2(h))
        h = F.mish(self.fc3(h))
        return self.out(h)

    # -- the factorised fast path -----------------------------------------------------------
    def _fc1_blocks(self) -> tuple[Tensor, Tensor, Tensor]:
        a, t = self.act_dim, self.time_embed_dim
        w = self.fc1.weight
        return w[:, :a], w[:, a : a + t], w[:, a + t :]

    def time_features(self) -> Tensor:
        """``W_t t_emb(i)`` for i = 0..T-1: shape (T, hidden)."""
        t_emb = self.time_fc2(mish(self.time_fc1(self.step_sinusoids)))
        return t_emb @ self._fc1_blocks()[1].t()

    def state_features(self, obs: Tensor) -> Tensor:
        """``W_s s + b``: shape (B, hidden)."""
        return F.linear(obs, self._fc1_blocks()[2], self.fc1.bias)

    def eps_from_features(self, noisy_actions: Tensor, cond: Tensor) -> Tensor:
        """eps_hat given the first layer's conditioning part ``cond`` (rows or broadcast).

        ``noisy_actions`` has N = B * k rows ordered state-major (k samples per state);
        ``cond`` has B rows (or N), so repeated states are never materialised.
        """
        w_act = self._fc1_blocks()[0]
        n, b = noisy_actions.shape[0], cond.shape[0]
        if n == b:
            h = torch.addmm(cond, noisy_actions, w_act.t())
        else:
            h = (noisy_actions @ w_act.t()).view(b, n // b, -1)
            h = h.add_(cond.unsqueeze(1)).view(n, -1)
        h = mish(h)
        h = mish(torch.addmm(self.fc2.bias, h, self.fc2.weight.t()))
        h = mish(torch.addmm(self.fc3.bias, h, self.fc3.weight.t()))
        return torch.addmm(self.out.bias, h, self.out.weight.t())


def reverse_sample(
    model: NoiseModel,
    schedule: DiffusionSchedule,
    obs: Tensor,
    generator: torch.Generator | None,
    max_action: float = 1.0,
    num_samples: int = 1,
    state_features: Tensor | None = None,
    time_features: Tensor | None = None,
) -> Tensor:
    """Draw ``num_samples`` actions per state by the reverse chain (paper [reverse_sampling]).

    Start from ``x_{T-1} ~ N(0, I)``; for i = T-1..0:

    .. math::

        \\hat x_0 = \\operatorname{clip}\\big(\\sqrt{1/\\bar\\alpha_i}\\,x_i
                    - \\sqrt{1/\\bar\\alpha_i - 1}\\,\\epsilon_\\theta(x_i, s, i),
                    \\pm a_{max}\\big),\\quad
        x_{i-1} = c_1 \\hat x_0 + c_2 x_i + \\mathbb 1[i>0]\\,\\sigma_i z.

    The paper writes the mean as ``(x_i - beta_i/sqrt(1-alpha_bar_i) eps)/sqrt(alpha_i)``;
    the implementation (followed here) goes through the clipped x0 estimate, which differs
    only when the clip binds. The final action is clamped. Gradients flow through all T
    steps when grad mode is on. Returns shape (B * num_samples, act_dim), state-major.
    """
    batch = obs.shape[0]
    n = batch * num_samples
    if state_features is None:
        state_features = model.state_features(obs)
    if time_features is None:
        time_features = model.time_features()
    s = schedule
    x = torch.randn(n, model.act_dim, generator=generator, device=obs.device, dtype=obs.dtype)
    for i in reversed(range(s.n_timesteps)):
        eps_hat = model.eps_from_features(x, state_features + time_features[i])
        x0_hat = torch.add(
            s.sqrt_recip_alpha_bars_list[i] * x, eps_hat, alpha=-s.sqrt_recipm1_alpha_bars_list[i]
        ).clamp_(-max_action, max_action)
        mean = torch.add(
            s.posterior_mean_coef1_list[i] * x0_hat, x, alpha=s.posterior_mean_coef2_list[i]
        )
        if i > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean.add_(noise, alpha=s.posterior_std_list[i])
        else:
            x = mean
    return x.clamp(-max_action, max_action)


def diffusion_loss(
    predict_noise: Callable[[Tensor, Tensor], Tensor],
    schedule: DiffusionSchedule,
    actions: Tensor,
    generator: torch.Generator | None,
) -> Tensor:
    """L_c, the diffusion ("behaviour cloning") loss (paper eq. [loss2]).

    .. math::

        \\mathcal L_c = \\mathbb E_{i, \\epsilon, (s, a)}
            \\big\\|\\epsilon - \\epsilon_\\theta(\\sqrt{\\bar\\alpha_i} a
            + \\sqrt{1 - \\bar\\alpha_i}\\,\\epsilon, s, i)\\big\\|^2

    with one ``i ~ U{0..T-1}`` per sample. As in the implementation the squared error is
    averaged over the batch *and* the action dimensions (the paper writes a squared norm,
    i.e. a sum over dimensions); kappa is on this per-dimension scale.
    ``predict_noise(x_i, i)`` returns eps_hat for the batch's states.
    """
    batch = actions.shape[0]
    steps = torch.randint(
        0, schedule.n_timesteps, (batch,), generator=generator, device=actions.device
    )
    noise = torch.randn(
        actions.shape, generator=generator, device=actions.device, dtype=actions.dtype
    )
    noisy = schedule.q_sample(actions, steps, noise)
    return F.mse_loss(predict_noise(noisy, steps), noise)
