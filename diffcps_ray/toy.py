"""The paper's toy bandit (section 3.1 and its appendix): ``python -m diffcps_ray.toy``.

Data: 5000 actions ``a = (cos θ, sin θ) + ε`` with ``θ ~ U[0, 2π)`` and ``ε ~ N(0, σ² I)``,
``σ = 0.05`` (the paper's "N(0, 0.05)" read as a standard deviation, which is what gives its
thin noisy ring), each with reward 1. Three kinds of policy are trained on it:

- ``awr``: a unimodal Gaussian policy (MLP mean, state-independent learned log-std) trained by
  advantage-weighted regression with a learned value baseline. Every reward is 1 and the
  state is constant, so every action in a batch gets the same advantage and the same weight:
  AWR reduces to maximum-likelihood fitting of one Gaussian, N(≈0, ≈0.5 I) for this ring,
  whose mean sits at the centre. The paper plots "the actions taken by the trained policy"
  as a cloud of points, so the scored actions are *samples* from the fitted Gaussian (its
  deterministic action, the mean, would be one point at the centre: in_band 0); the mean is
  drawn as a cross in the figure.
- ``diffcps``: ``diffcps_ray.algorithm.DiffCPSAgent`` unchanged, one run per diffusion-step
  count T, with the authors' default settings (``DiffCPSSettings()``: kappa 0.05, lambda
  init 1, freq 2, ...) except ``T`` and ``max_action = 1.5`` (the noisy ring reaches 1.2 and
  the sampler clamps to ±max_action). Its actions are ``agent.sample(obs)``: one plain
  reverse-diffusion sample per query, what the policy generates, without the evaluation-time
  softmax-Q pick among 50 candidates.
- ``diffusion_bc``: the same agent and sampler trained on the diffusion loss L_c alone (see
  ``train_diffusion_bc``), per T.

The bandit has no state. Every method sees a constant dummy state ``obs = new_obs = 0`` of
dimension 1, and ``terminateds = 1`` so the critic target ``r + γ (1 - done) Q'`` is exactly
the reward.

Scores (``score_samples``), for each method and T, over ``--samples`` sampled actions:

- ``in_band``: the fraction of sampled actions whose nearest data point is strictly closer
  than the band threshold, the 99th percentile over data points of the distance from a data
  point to its nearest *other* data point. (The paper counts samples closer than 1e-8 to a
  data point, which only a model that memorises the data can reach; this threshold asks
  "inside the noisy ring, as densely as the data itself" instead.)
- ``coverage``: the angle ``atan2(y, x)`` of each *in-band* sample falls in one of 36 equal
  bins ``k = floor((angle + π) / 10°) mod 36`` (bin 0 starts at -π); coverage is the fraction
  of the 36 bins holding at least one in-band sample. Only in-band samples count, so a cloud
  around the centre covers nothing however it spreads in angle.

Output (written only once everything has run): ``DIR/scores.json`` =
``{"awr": {"-": {"in_band", "coverage"}}, "diffcps": {"<T>": {...}}, "diffusion_bc": {...}}``
and ``DIR/toy.png`` (data, AWR, DiffCPS per T; diffusion BC per T below).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffcps_ray.algorithm import DiffCPSAgent, DiffCPSSettings
from diffcps_ray.algorithm.diffusion import diffusion_loss
from diffcps_ray.algorithm.update import policy_step_due
from diffcps_ray.cli import (
    PlainArgumentParser,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_main,
)
from diffcps_ray.errors import ConfigError
from diffcps_ray.runtime import set_torch_threads

OBS_DIM = 1  # constant dummy state: the bandit is state-less
ACT_DIM = 2
NUM_BINS = 36
BAND_QUANTILE = 0.99
# The noisy ring reaches |x| ~ 1.2; the diffusion sampler clamps to [-max_action, max_action].
MAX_ACTION = 1.5
PLOT_LIMIT = 1.6
METHOD_OFFSETS = {"awr": 0, "diffcps": 1, "diffusion_bc": 2}
# With a constant state the AWR networks output constants, so their width is immaterial;
# small keeps the baseline cheap next to the diffusion runs.
AWR_HIDDEN = 64


# --------------------------------------------------------------------------------------
# Data and scores
# --------------------------------------------------------------------------------------


def make_ring_data(num_points: int, noise_std: float, seed: int) -> np.ndarray:
    """``num_points`` actions on the unit circle (uniform angle) plus N(0, noise_std²) noise."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0.0, 2.0 * math.pi, size=num_points)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (ring + rng.normal(0.0, noise_std, size=ring.shape)).astype(np.float32)


def _as_float64(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, ACT_DIM)


def nearest_distances(
    queries: np.ndarray, data: np.ndarray, exclude_self: bool = False, chunk: int = 1000
) -> np.ndarray:
    """Distance from each query point to its nearest data point.

    With ``exclude_self`` the queries are the data and each point skips itself by index (a
    duplicate point elsewhere in the data still counts as a neighbour at distance 0).
    """
    query_t, data_t = _as_float64(queries), _as_float64(data)
    if exclude_self and len(data_t) < 2:
        raise ConfigError("The band threshold needs at least 2 data points.")
    nearest = torch.empty(len(query_t), dtype=torch.float64)
    for start in range(0, len(query_t), chunk):
        block = query_t[start : start + chunk]
        # Exact differences (not the |a|²+|b|²-2ab shortcut): a point on the data gives 0.
        dists = torch.cdist(block, data_t, compute_mode="donot_use_mm_for_euclid_dist")
        if exclude_self:
            rows = torch.arange(len(block))
            dists[rows, rows + start] = math.inf
        nearest[start : start + len(block)] = dists.min(dim=1).values
    return nearest.numpy()


def band_threshold(data: np.ndarray, quantile: float = BAND_QUANTILE) -> float:
    """The ``quantile`` of the data's nearest-other-data-point distances."""
    return float(np.quantile(nearest_distances(data, data, exclude_self=True), quantile))


def in_band_mask(samples: np.ndarray, data: np.ndarray, threshold: float) -> np.ndarray:
    """True where a sample's nearest data point is strictly closer than ``threshold``."""
    return nearest_distances(samples, data) < threshold


def angle_bins(points: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin index of ``atan2(y, x)``: ``floor((angle + π) / (2π / num_bins)) mod num_bins``."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, ACT_DIM)
    angles = np.arctan2(points[:, 1], points[:, 0])
    # mod: angle = π is the direction of -π, the start of bin 0.
    return np.floor((angles + math.pi) / (2.0 * math.pi / num_bins)).astype(np.int64) % num_bins


def coverage(points: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Fraction of the ``num_bins`` angular bins holding at least one of ``points``."""
    if len(points) == 0:
        return 0.0
    return len(np.unique(angle_bins(points, num_bins))) / num_bins


def score_samples(
    samples: np.ndarray, data: np.ndarray, threshold: float, num_bins: int = NUM_BINS
) -> dict[str, float]:
    """``in_band`` and ``coverage`` (of the in-band samples) as defined in the module doc."""
    samples = np.asarray(samples, dtype=np.float64).reshape(-1, ACT_DIM)
    if len(samples) == 0:
        raise ConfigError("Scoring needs at least one sampled action.")
    inside = in_band_mask(samples, data, threshold)
    return {
        "in_band": float(inside.mean()),
        "coverage": coverage(samples[inside], num_bins),
    }


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyConfig:
    """Everything one toy run depends on (the command-line flags)."""

    steps: int = 20_000
    T_values: tuple[int, ...] = (5, 15, 20)
    noise: float = 0.05
    seed: int = 0
    samples: int = 1000
    batch_size: int = 256
    num_points: int = 5000
    log_every: int = 2000
    awr_lr: float = 3e-4
    awr_beta: float = 1.0

    def validate(self) -> None:
        """Raise ``ConfigError`` with one sentence for the first bad value."""
        positive = {
            "--steps": self.steps,
            "--samples": self.samples,
            "--batch-size": self.batch_size,
            "--num-points": self.num_points,
            "--log-every": self.log_every,
        }
        for flag, value in positive.items():
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}.")
        if not self.T_values:
            raise ConfigError("--T needs at least one diffusion-step count.")
        for T in self.T_values:
            if T < 1:
                raise ConfigError(f"--T values must be at least 1, got {T}.")
        if len(set(self.T_values)) != len(self.T_values):
            raise ConfigError(f"--T values must be distinct, got {list(self.T_values)}.")
        if not (math.isfinite(self.noise) and self.noise >= 0.0):
            raise ConfigError(f"--noise must be a finite number >= 0, got {self.noise}.")
        if self.num_points < 2:
            raise ConfigError(f"--num-points must be at least 2, got {self.num_points}.")
        if not (self.awr_lr > 0.0 and self.awr_beta > 0.0):
            raise ConfigError("--awr-lr and --awr-beta must be positive.")


def method_seed(seed: int, method: str, T: int = 0) -> int:
    """A distinct, reproducible seed per (method, T): one run does not shift another's."""
    return seed * 1009 + METHOD_OFFSETS[method] * 101 + T


def bandit_batch(actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """The agent's batch for a state-less bandit: constant zero state, reward 1, done."""
    size = len(actions)
    zeros_obs = torch.zeros(size, OBS_DIM)
    return {
        "obs": zeros_obs,
        "actions": actions,
        "rewards": torch.ones(size),
        "new_obs": zeros_obs,
        "terminateds": torch.ones(size),
    }


def _mlp(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.Mish(),
        nn.Linear(hidden, hidden),
        nn.Mish(),
        nn.Linear(hidden, out_dim),
    )


class GaussianPolicy(nn.Module):
    """Unimodal Gaussian: MLP mean, state-independent learned log-std (AWR's actor)."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.mean_net = _mlp(obs_dim, act_dim, AWR_HIDDEN)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        std = self.log_std.clamp(-5.0, 2.0).exp()
        return torch.distributions.Normal(self.mean_net(obs), std.expand(len(obs), -1))


class Progress:
    """One line every ``every`` steps (and at the last step) for one method."""

    def __init__(self, label: str, total: int, every: int) -> None:
        self.label, self.total, self.every = label, total, every
        self.start = time.perf_counter()

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.total

    def __call__(self, step: int, metrics: dict[str, float | torch.Tensor]) -> None:
        if not self.due(step):
            return
        shown = "  ".join(f"{name} {float(value):.4g}" for name, value in metrics.items())
        elapsed = time.perf_counter() - self.start
        print(f"[{self.label}] step {step}/{self.total}  {shown}  ({elapsed:.0f} s)", flush=True)


def train_awr(data: torch.Tensor, config: ToyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Train the Gaussian AWR baseline; return (``config.samples`` sampled actions, mean)."""
    seed = method_seed(config.seed, "awr")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    policy, value = GaussianPolicy(OBS_DIM, ACT_DIM), _mlp(OBS_DIM, 1, AWR_HIDDEN)
    policy_opt = torch.optim.Adam(policy.parameters(), lr=config.awr_lr)
    value_opt = torch.optim.Adam(value.parameters(), lr=config.awr_lr)
    progress = Progress("awr", config.steps, config.log_every)
    for step in range(1, config.steps + 1):
        indices = torch.randint(len(data), (config.batch_size,), generator=generator)
        batch = bandit_batch(data[indices])
        baseline = value(batch["obs"]).squeeze(-1)
        value_loss = torch.mean((baseline - batch["rewards"]) ** 2)
        value_opt.zero_grad()
        value_loss.backward()
        value_opt.step()
        # AWR weights exp(A / beta), clipped at 20 as in Peng et al.; here A is the same for
        # every action in the batch (constant state, reward 1), so this is max-likelihood.
        advantages = batch["rewards"] - baseline.detach()
        weights = torch.exp(advantages / config.awr_beta).clamp(max=20.0)
        log_probs = policy.distribution(batch["obs"]).log_prob(batch["actions"]).sum(-1)
        policy_loss = -(weights * log_probs).mean()
        policy_opt.zero_grad()
        policy_loss.backward()
        policy_opt.step()
        if progress.due(step):
            std = policy.log_std.detach().exp().mean()
            progress(
                step,
                {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "std": std},
            )
    with torch.no_grad():
        dist = policy.distribution(torch.zeros(config.samples, OBS_DIM))
        samples = dist.sample()
        mean = dist.mean[0]
    return samples.numpy(), mean.numpy()


def _train_agent_steps(
    label: str,
    update: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    data: torch.Tensor,
    config: ToyConfig,
    generator: torch.Generator,
    shown: Sequence[str],
) -> None:
    """``config.steps`` calls of ``update`` on uniform (with replacement) bandit batches."""
    progress = Progress(label, config.steps, config.log_every)
    for step in range(1, config.steps + 1):
        indices = torch.randint(len(data), (config.batch_size,), generator=generator)
        metrics = update(bandit_batch(data[indices]))
        if progress.due(step):  # reading a metric syncs a GPU: only when printing
            progress(step, {name: metrics[name] for name in shown if name in metrics})


def diffusion_settings(config: ToyConfig, T: int) -> DiffCPSSettings:
    """The authors' default DiffCPS settings with T steps and room for the whole ring."""
    return DiffCPSSettings().replace(T=T, max_action=MAX_ACTION, batch_size=config.batch_size)


def train_diffcps(data: torch.Tensor, config: ToyConfig, T: int) -> np.ndarray:
    """Train ``DiffCPSAgent`` with T diffusion steps; return ``config.samples`` samples."""
    seed = method_seed(config.seed, "diffcps", T)
    agent = DiffCPSAgent(OBS_DIM, ACT_DIM, diffusion_settings(config, T), seed=seed)
    shown = ("diffusion_loss", "q_loss", "lambda", "q_mean", "critic_loss")
    _train_agent_steps(f"diffcps T={T}", agent.update, data, config, agent.generator, shown)
    return agent.sample(torch.zeros(config.samples, OBS_DIM)).numpy()


def train_diffusion_bc(data: torch.Tensor, config: ToyConfig, T: int) -> np.ndarray:
    """The same diffusion policy trained on L_c alone; return ``config.samples`` samples.

    Borrows a fresh ``DiffCPSAgent``'s noise model, schedule, actor optimiser (Adam,
    ``actor_lr``, gradient clipping at ``grad_norm``), generator and sampler, and replaces
    its update by a step on ``diffusion_loss`` from ``diffcps_ray.algorithm.diffusion``:
    DiffCPS with no critic, no Q term and no lambda. Like the agent it takes an actor step
    on steps 0, freq, 2 freq, ... so both get the same number of policy updates and differ
    only in the Q term.
    """
    seed = method_seed(config.seed, "diffusion_bc", T)
    agent = DiffCPSAgent(OBS_DIM, ACT_DIM, diffusion_settings(config, T), seed=seed)
    settings = agent.settings
    last_metrics: dict[str, torch.Tensor] = {}

    def update(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if policy_step_due(agent.num_steps, settings.freq):

            def predict_noise(noisy: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
                return agent.actor(noisy, steps, batch["obs"])

            loss = diffusion_loss(predict_noise, agent.schedule, batch["actions"], agent.generator)
            agent.optimizers["actor"].zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_norm > 0:
                nn.utils.clip_grad_norm_(agent.actor.parameters(), settings.grad_norm)
            agent.optimizers["actor"].step()
            last_metrics["diffusion_loss"] = loss.detach()
        agent.num_steps += 1
        return last_metrics

    shown = ("diffusion_loss",)
    _train_agent_steps(f"diffusion_bc T={T}", update, data, config, agent.generator, shown)
    return agent.sample(torch.zeros(config.samples, OBS_DIM)).numpy()


# --------------------------------------------------------------------------------------
# One full run, report, figure
# --------------------------------------------------------------------------------------


@dataclass
class MethodResult:
    """One trained policy's sampled actions and their scores."""

    method: str
    T: int | None  # None for AWR, which has no diffusion steps
    samples: np.ndarray
    scores: dict[str, float]

    @property
    def key(self) -> str:
        return "-" if self.T is None else str(self.T)


@dataclass
class ToyRun:
    """Everything a run produced, before anything is written."""

    config: ToyConfig
    data: np.ndarray
    threshold: float
    results: list[MethodResult]
    awr_mean: np.ndarray
    wall_seconds: float

    def scores_json(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{"<method>": {"<T>" or "-": {"in_band": float, "coverage": float}}}``."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for result in self.results:
            table.setdefault(result.method, {})[result.key] = dict(result.scores)
        return table


def run_toy(config: ToyConfig) -> ToyRun:
    """Generate the data, train every method, sample and score; writes nothing."""
    start = time.perf_counter()
    data = make_ring_data(config.num_points, config.noise, config.seed)
    threshold = band_threshold(data)
    print(
        f"data: {config.num_points} actions on the unit circle + N(0, {config.noise}^2) noise; "
        f"band threshold (99th pct nearest-neighbour distance) {threshold:.4f}",
        flush=True,
    )
    data_t = torch.from_numpy(data)
    results: list[MethodResult] = []

    def add(method: str, T: int | None, samples: np.ndarray) -> None:
        scores = score_samples(samples, data, threshold)
        results.append(MethodResult(method, T, samples, scores))
        label = method if T is None else f"{method} T={T}"
        print(
            f"[{label}] in_band {scores['in_band']:.3f}  coverage {scores['coverage']:.3f}",
            flush=True,
        )

    # Cheapest first: a run cut short has already printed the most scores.
    awr_samples, awr_mean = train_awr(data_t, config)
    add("awr", None, awr_samples)
    for T in config.T_values:
        add("diffusion_bc", T, train_diffusion_bc(data_t, config, T))
    for T in config.T_values:
        add("diffcps", T, train_diffcps(data_t, config, T))
    order = list(METHOD_OFFSETS)
    results.sort(key=lambda result: order.index(result.method))  # stable: T order kept
    return ToyRun(config, data, threshold, results, awr_mean, time.perf_counter() - start)


def format_table(run: ToyRun) -> str:
    """The scores as a fixed-width text table."""
    lines = [f"{'method':<14}{'T':>4}{'in_band':>10}{'coverage':>10}"]
    for result in run.results:
        lines.append(
            f"{result.method:<14}{result.key:>4}"
            f"{result.scores['in_band']:>10.3f}{result.scores['coverage']:>10.3f}"
        )
    return "\n".join(lines)


METHOD_TITLES = {"awr": "AWR (Gaussian)", "diffcps": "DiffCPS", "diffusion_bc": "Diffusion BC"}
METHOD_COLOURS = {"awr": "tab:red", "diffcps": "tab:blue", "diffusion_bc": "tab:green"}


def plot_run(run: ToyRun, path: Path) -> None:
    """Figure-1-like grid: data, AWR, DiffCPS per T on top; diffusion BC per T below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_T = len(run.config.T_values)
    columns = 2 + num_T
    fig, axes = plt.subplots(2, columns, figsize=(2.6 * columns, 5.6), squeeze=False)
    for ax in axes.flat:
        ax.set_xlim(-PLOT_LIMIT, PLOT_LIMIT)
        ax.set_ylim(-PLOT_LIMIT, PLOT_LIMIT)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])

    def draw(ax: plt.Axes, result: MethodResult) -> None:
        ax.scatter(*run.data.T, s=1, c="0.85", linewidths=0)
        ax.scatter(*result.samples.T, s=2, c=METHOD_COLOURS[result.method], linewidths=0)
        name = METHOD_TITLES[result.method] + ("" if result.T is None else f" T={result.T}")
        scores = result.scores
        ax.set_title(
            f"{name}\nin-band {scores['in_band']:.2f}, cover {scores['coverage']:.2f}",
            fontsize=9,
        )

    axes[0, 0].scatter(*run.data.T, s=1, c="0.3", linewidths=0)
    axes[0, 0].set_title(f"Data ({len(run.data)} actions, r=1)", fontsize=9)
    by_key = {(result.method, result.T): result for result in run.results}
    draw(axes[0, 1], by_key[("awr", None)])
    axes[0, 1].scatter(*run.awr_mean, marker="x", s=60, c="black", label="mean")
    axes[0, 1].legend(loc="upper right", fontsize=7, handletextpad=0.2)
    for column, T in enumerate(run.config.T_values, start=2):
        draw(axes[0, column], by_key[("diffcps", T)])
        draw(axes[1, column], by_key[("diffusion_bc", T)])
    axes[1, 0].axis("off")
    axes[1, 1].axis("off")
    axes[1, 0].text(
        0.0,
        0.5,
        f"{run.config.samples} sampled actions per policy\n"
        f"{run.config.steps} steps, seed {run.config.seed}\n"
        "grey: data; in-band: nearest data point\n"
        f"closer than {run.threshold:.3f} (99th pct NN)\n"
        "cover: share of 36 angle bins hit\nby in-band samples",
        fontsize=8,
        va="center",
        transform=axes[1, 0].transAxes,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(run: ToyRun, out_dir: Path) -> tuple[Path, Path]:
    """Write ``scores.json`` and ``toy.png`` atomically (temporary file, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path, figure_path = out_dir / "scores.json", out_dir / "toy.png"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".toy-tmp-") as tmp:
        tmp_scores, tmp_figure = Path(tmp) / "scores.json", Path(tmp) / "toy.png"
        tmp_scores.write_text(json.dumps(run.scores_json(), indent=2) + "\n")
        plot_run(run, tmp_figure)
        os.replace(tmp_scores, scores_path)
        os.replace(tmp_figure, figure_path)
    return scores_path, figure_path


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m diffcps_ray.toy",
        description="The paper's toy bandit: DiffCPS vs AWR vs diffusion BC on a noisy ring.",
    )
    parser.add_argument("--steps", type=positive_int, default=20_000,
                        help="gradient steps (minibatch updates) per method and T "
                             "(default 20000)")
    parser.add_argument("--T", type=positive_int, nargs="+", default=[5, 15, 20],
                        help="diffusion step counts, one DiffCPS and one diffusion-BC run "
                             "each (default 5 15 20)")
    parser.add_argument("--noise", type=non_negative_float, default=0.05,
                        help="standard deviation of the ring noise (default 0.05)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the data and every run (default 0)")
    parser.add_argument("--out", type=Path, default=Path("results/toy"),
                        help="output directory for scores.json and toy.png "
                             "(default results/toy)")
    parser.add_argument("--samples", type=positive_int, default=1000,
                        help="actions sampled per policy for the scores (default 1000)")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="minibatch size (default 256)")
    parser.add_argument("--num-points", type=positive_int, default=5000,
                        help="actions in the data set (default 5000)")
    parser.add_argument("--log-every", type=positive_int, default=2000,
                        help="a progress line every this many steps (default 2000)")
    parser.add_argument("--awr-lr", type=positive_float, default=3e-4,
                        help="AWR learning rate (default 3e-4)")
    parser.add_argument("--awr-beta", type=positive_float, default=1.0,
                        help="AWR temperature (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = ToyConfig(
        steps=args.steps,
        T_values=tuple(args.T),
        noise=args.noise,
        seed=args.seed,
        samples=args.samples,
        batch_size=args.batch_size,
        num_points=args.num_points,
        log_every=args.log_every,
        awr_lr=args.awr_lr,
        awr_beta=args.awr_beta,
    )
    config.validate()
    out_dir: Path = args.out
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a directory.")
    set_torch_threads(1)
    run = run_toy(config)
    scores_path, figure_path = write_outputs(run, out_dir)
    print(format_table(run))
    print(f"wrote {scores_path} and {figure_path}; total wall time {run.wall_seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
