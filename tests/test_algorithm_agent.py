"""DiffCPSAgent: the order and timing of the updates, determinism, checkpoints."""

from __future__ import annotations

import pytest
import torch

from diffcps_ray.algorithm.agent import METRIC_NAMES, OPTIMIZER_NAMES, DiffCPSAgent
from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.algorithm.diffusion import reverse_sample

OBS, ACT, B = 6, 2, 16


def _settings(**overrides) -> DiffCPSSettings:
    return DiffCPSSettings(hidden_dim=32, batch_size=B).replace(**overrides)


def _batch(seed: int, obs_dim: int = OBS, act_dim: int = ACT) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(B, obs_dim, generator=g),
        "actions": torch.rand(B, act_dim, generator=g) * 2 - 1,
        "rewards": torch.randn(B, generator=g),
        "new_obs": torch.randn(B, obs_dim, generator=g),
        "terminateds": (torch.rand(B, generator=g) < 0.2).float(),
    }


def _snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_update_returns_every_metric_as_detached_scalar() -> None:
    metrics = DiffCPSAgent(OBS, ACT, _settings()).update(_batch(0))
    assert set(metrics) == set(METRIC_NAMES)
    for value in metrics.values():
        assert value.ndim == 0 and not value.requires_grad and torch.isfinite(value)


def test_actor_and_lambda_update_only_on_multiples_of_freq() -> None:
    agent = DiffCPSAgent(OBS, ACT, _settings(freq=3, kappa=1e-3))
    for step in range(7):
        actor_before = _snapshot(agent.actor.parameters())
        lambda_before = agent.lambda_param.item()
        critic_before = _snapshot(agent.critic.parameters())
        agent.update(_batch(step))
        actor_moved = not _equal(actor_before, agent.actor.parameters())
        lambda_moved = agent.lambda_param.item() != lambda_before
        assert actor_moved == lambda_moved == (step % 3 == 0), step
        assert not _equal(critic_before, agent.critic.parameters())  # critic: every step
    assert agent.num_steps == 7


def test_targets_polyak_every_step_and_ema_from_start_step_every_interval() -> None:
    s = _settings(ema_start_step=4, ema_interval=3, freq=1)
    agent = DiffCPSAgent(OBS, ACT, s)
    initial_actor = _snapshot(agent.actor.parameters())
    assert _equal(initial_actor, agent.ema_actor.parameters())
    updated_at = []
    for step in range(11):
        ema_before = _snapshot(agent.ema_actor.parameters())
        target_before = _snapshot(agent.critic_target.parameters())
        agent.update(_batch(step))
        for t_old, t_new, online in zip(
            target_before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True
        ):
            torch.testing.assert_close(t_new, t_old + s.tau * (online.detach() - t_old))
        if _equal(ema_before, agent.ema_actor.parameters()):
            continue
        updated_at.append(step)
        for e_old, e_new, online in zip(
            ema_before, agent.ema_actor.parameters(), agent.actor.parameters(), strict=True
        ):
            expected = s.ema_decay * e_old + (1 - s.ema_decay) * online.detach()
            torch.testing.assert_close(e_new, expected)
    assert updated_at == [6, 9]


@pytest.mark.parametrize("max_q_backup", [False, True])
def test_critic_loss_matches_the_target_written_out(max_q_backup: bool) -> None:
    agent = DiffCPSAgent(OBS, ACT, _settings(max_q_backup=max_q_backup, num_backup_samples=4))
    agent.update(_batch(0))  # leave the initial state so targets and online nets differ
    batch = _batch(1)
    critic = [p.detach().clone() for p in agent.critic.parameters()]
    generator = torch.Generator().set_state(agent.generator.get_state())
    k = 4 if max_q_backup else 1
    with torch.no_grad():
        next_actions = reverse_sample(
            agent.ema_actor, agent.schedule, batch["new_obs"], generator, 1.0, k
        )
        next_states = batch["new_obs"].repeat_interleave(k, 0)
        q1_next, q2_next = agent.critic_target(next_states, next_actions).view(2, B, k)
        expected_target = torch.empty(B)
        for b in range(B):
            best = min(q1_next[b].max(), q2_next[b].max())
            not_done = 1 - batch["terminateds"][b]
            expected_target[b] = batch["rewards"][b] + 0.99 * not_done * best
        for p, value in zip(agent.critic.parameters(), critic, strict=True):
            p.copy_(value)
        q1, q2 = agent.critic(batch["obs"], batch["actions"])
        expected = ((q1 - expected_target) ** 2).mean() + ((q2 - expected_target) ** 2).mean()
    metrics = agent.update(batch)
    assert metrics["critic_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_actor_loss_uses_the_clamped_multiplier() -> None:
    agent = DiffCPSAgent(OBS, ACT, _settings(lambda_init=0.1, lambda_clip=0.3))
    metrics = agent.update(_batch(0))
    assert metrics["lambda_clamped"].item() == pytest.approx(0.3)
    assert metrics["lambda"].item() < 0.3  # the raw parameter is never clamped
    combined = metrics["lambda_clamped"] * metrics["diffusion_loss"] + metrics["q_loss"]
    assert metrics["actor_loss"].item() == pytest.approx(combined.item(), rel=1e-6)


@pytest.mark.parametrize(("kappa", "direction"), [(1e-4, 1), (50.0, -1)])
def test_lambda_follows_the_constraint(kappa: float, direction: int) -> None:
    agent = DiffCPSAgent(OBS, ACT, _settings(kappa=kappa, freq=1))
    for step in range(4):
        metrics = agent.update(_batch(step))
        assert (metrics["diffusion_loss"].item() > kappa) == (direction > 0)
    assert (agent.lambda_param.item() - 1.0) * direction > 0


def _run(agent: DiffCPSAgent, seeds: range) -> list[dict[str, torch.Tensor]]:
    return [agent.update(_batch(s)) for s in seeds]


def test_same_seed_same_losses_different_seed_different_losses() -> None:
    settings = _settings(max_q_backup=True, num_backup_samples=3)
    first = _run(DiffCPSAgent(OBS, ACT, settings, seed=5), range(4))
    second = _run(DiffCPSAgent(OBS, ACT, settings, seed=5), range(4))
    other = _run(DiffCPSAgent(OBS, ACT, settings, seed=6), range(4))
    for a, b in zip(first, second, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in METRIC_NAMES)
    assert not torch.equal(first[-1]["critic_loss"], other[-1]["critic_loss"])


def test_state_dict_round_trip_continues_bit_identically() -> None:
    settings = _settings(freq=2, ema_start_step=2, ema_interval=1)
    agent = DiffCPSAgent(OBS, ACT, settings, seed=1)
    _run(agent, range(3))
    state = agent.state_dict()
    agent.act(torch.randn(4, OBS))  # evaluation must not disturb training randomness
    continued = _run(agent, range(3, 7))

    restored = DiffCPSAgent(OBS, ACT, settings, seed=99)
    restored.load_state_dict(state)
    assert restored.num_steps == 3
    resumed = _run(restored, range(3, 7))
    for a, b in zip(continued, resumed, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in METRIC_NAMES), a
    assert _equal(agent.ema_actor.parameters(), restored.ema_actor.parameters())


def test_act_and_sample_give_bounded_actions_of_the_right_shape() -> None:
    agent = DiffCPSAgent(OBS, ACT, _settings(max_action=0.5))
    agent.update(_batch(0))
    training_rng = agent.generator.get_state()
    one = agent.act(torch.randn(OBS))
    many = agent.act(torch.randn(5, OBS))
    plain = agent.sample(torch.randn(3, OBS))
    assert one.shape == (ACT,) and many.shape == (5, ACT) and plain.shape == (3, ACT)
    assert max(one.abs().max(), many.abs().max(), plain.abs().max()) <= 0.5
    assert torch.equal(agent.generator.get_state(), training_rng)


def test_act_draws_from_softmax_of_the_target_critics_min() -> None:
    """With Q differences of ~100 the softmax is one-hot: act returns the best candidate."""
    agent = DiffCPSAgent(1, 1, _settings(num_eval_candidates=50))
    with torch.no_grad():  # make both target critics Q(s, a) = 100 * a (linear)
        for p in agent.critic_target.parameters():
            p.zero_()
        agent.critic_target.w1[1, :].fill_(1.0)  # action row; state row stays 0
        agent.critic_target.b1.fill_(5.0)  # mish is near-linear for x > 5
        for w in (agent.critic_target.w2, agent.critic_target.w3):
            w.copy_(torch.eye(32).expand(2, 32, 32))
        agent.critic_target.w4[:, 0, 0] = 100.0
    generator_state = agent.eval_generator.get_state()
    chosen = agent.act(torch.zeros(1, 1))
    agent.eval_generator.set_state(generator_state)
    candidates = reverse_sample(
        agent.actor, agent.schedule, torch.zeros(1, 1), agent.eval_generator, 1.0, 50
    )
    assert chosen.item() == pytest.approx(candidates.max().item(), abs=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda() -> None:
    agent = DiffCPSAgent(OBS, ACT, _settings(max_q_backup=True), device="cuda")
    batch = {k: v.cuda() for k, v in _batch(0).items()}
    metrics = [agent.update(batch) for _ in range(3)][-1]
    assert all(v.device.type == "cuda" for v in metrics.values())
    assert agent.act(torch.randn(4, OBS, device="cuda")).device.type == "cuda"
    restored = DiffCPSAgent(OBS, ACT, _settings(max_q_backup=True), device="cuda")
    restored.load_state_dict(agent.state_dict())
    a, b = agent.update(batch), restored.update(batch)
    assert torch.equal(a["critic_loss"], b["critic_loss"])


def _literal_chain(model, schedule, obs, generator):
    """The implementation's reverse chain through ``model.forward`` (concat input)."""
    x = torch.randn(obs.shape[0], model.act_dim, generator=generator)
    for i in reversed(range(schedule.n_timesteps)):
        eps = model(x, torch.full((obs.shape[0],), i), obs)
        x0 = schedule.sqrt_recip_alpha_bars[i] * x - schedule.sqrt_recipm1_alpha_bars[i] * eps
        mean = (schedule.posterior_mean_coef1[i] * x0.clamp(-1, 1)
                + schedule.posterior_mean_coef2[i] * x)  # fmt: skip
        if i > 0:
            x = mean + schedule.posterior_std[i] * torch.randn(x.shape, generator=generator)
        else:
            x = mean
    return x.clamp(-1, 1)


def test_actor_step_equals_the_literal_objective() -> None:
    """clamp(lambda) L_c - Q_a / mean|Q_b|, written out with the plain networks."""
    agent = DiffCPSAgent(OBS, ACT, _settings(lambda_init=0.7, freq=1, grad_norm=0.0))
    agent.update(_batch(0))
    batch = _batch(1)
    obs, actions = batch["obs"], batch["actions"]
    generator = torch.Generator().set_state(agent.generator.get_state())
    coin = torch.Generator().set_state(agent._coin_generator.get_state())
    # the critic step runs first in update(): replay it to get the critic the actor sees
    replica = DiffCPSAgent(OBS, ACT, _settings(lambda_init=0.7, freq=1, grad_norm=0.0))
    replica.load_state_dict(agent.state_dict())
    replica._critic_step(
        obs, actions, batch["rewards"], batch["new_obs"], 1 - batch["terminateds"],
        replica.optimizers["critic"],
    )
    generator.set_state(replica.generator.get_state())
    lam = agent.lambda_param.item()

    model, schedule = replica.actor, replica.schedule
    steps = torch.randint(0, 5, (B,), generator=generator)
    noise = torch.randn(actions.shape, generator=generator)
    noisy = schedule.sqrt_alpha_bars[steps, None] * actions
    noisy = noisy + schedule.sqrt_one_minus_alpha_bars[steps, None] * noise
    l_c = ((model(noisy, steps, obs) - noise) ** 2).mean()
    new_actions = _literal_chain(model, schedule, obs, generator)
    q1, q2 = replica.critic(obs, new_actions)
    q_a, q_b = (q1, q2) if torch.rand((), generator=coin).item() < 0.5 else (q2, q1)
    expected = lam * l_c - q_a.mean() / q_b.abs().mean().detach()
    grads = torch.autograd.grad(expected, list(model.parameters()))
    grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))

    metrics = agent.update(batch)
    assert metrics["diffusion_loss"].item() == pytest.approx(l_c.item(), rel=1e-5)
    assert metrics["actor_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["actor_grad_norm"].item() == pytest.approx(grad_norm.item(), rel=1e-4)


def test_a_checkpoint_from_the_other_device_type_resumes_deterministically() -> None:
    """A CUDA generator's state (16 bytes: Philox seed and offset) in a CPU agent's
    checkpoint, as after a GPU start resumed on CPU: the agent loads it and continues,
    twice the same way, on a stream other than a fresh agent's."""
    settings = _settings(freq=2)
    agent = DiffCPSAgent(OBS, ACT, settings, seed=1)
    _run(agent, range(2))
    state = agent.state_dict()
    assert state["generator"]["device_type"] == "cpu"
    cuda_like = {"device_type": "cuda", "state": torch.arange(16, dtype=torch.uint8)}
    for key in ("generator", "eval_generator"):
        state[key] = dict(cuda_like)
    runs = []
    for _ in range(2):
        restored = DiffCPSAgent(OBS, ACT, settings, seed=1)
        restored.load_state_dict(state)
        runs.append(_run(restored, range(2, 4)))
    for a, b in zip(*runs, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in METRIC_NAMES)
    uninterrupted = _run(agent, range(2, 4))
    assert any(not torch.equal(a["diffusion_loss"], b["diffusion_loss"])
               for a, b in zip(uninterrupted, runs[0], strict=True))


def test_a_checkpoint_with_bare_generator_states_still_loads() -> None:
    """Checkpoints written before the states carried their device type."""
    settings = _settings()
    agent = DiffCPSAgent(OBS, ACT, settings, seed=1)
    state = agent.state_dict()
    for key in ("generator", "eval_generator", "coin_generator"):
        state[key] = state[key]["state"]
    restored = DiffCPSAgent(OBS, ACT, settings, seed=7)
    restored.load_state_dict(state)
    assert torch.equal(restored.generator.get_state(), agent.generator.get_state())


def test_external_optimizers_train_exactly_like_own_ones() -> None:
    """What the RLlib Learner does: make the optimisers, pass them to every update."""
    settings = _settings(freq=2, lr_decay=True, lr_decay_steps=3, lr_decay_interval=1)
    own = DiffCPSAgent(OBS, ACT, settings, seed=3)
    bare = DiffCPSAgent(OBS, ACT, settings, seed=3, own_optimizers=False)
    assert bare.optimizers is None
    with pytest.raises(RuntimeError, match="no optimisers of its own"):
        bare.update(_batch(0))
    optimizers = bare.make_optimizers()
    assert list(optimizers) == list(OPTIMIZER_NAMES)
    for step in range(4):
        a, b = own.update(_batch(step)), bare.update(_batch(step), optimizers)
        assert all(torch.equal(a[k], b[k]) for k in METRIC_NAMES), step
    # The bare agent's state leaves the optimisers to their owner.
    assert "actor_optimizer" in own.state_dict()
    assert "actor_optimizer" not in bare.state_dict()


def test_losses_are_the_steps_losses_and_leave_training_unchanged() -> None:
    settings = _settings(freq=1)
    agent = DiffCPSAgent(OBS, ACT, settings, seed=2)
    twin = DiffCPSAgent(OBS, ACT, settings, seed=2)
    losses = agent.losses(_batch(0))
    assert {"critic_loss", "actor_loss", "lambda_loss"} <= set(losses)
    total = losses["critic_loss"] + losses["actor_loss"] + losses["lambda_loss"]
    total.backward()  # one backward reaches all three parameter sets
    assert agent.lambda_param.grad is not None
    assert all(p.grad is not None for p in agent.critic.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())
    # The first step's critic loss is the one losses() computed (same noise draws) ...
    metrics = agent.update(_batch(0))
    assert torch.equal(metrics["critic_loss"], losses["critic_loss"].detach())
    # ... and training continues as if losses() had never been called.
    expected = twin.update(_batch(0))
    assert all(torch.equal(metrics[k], expected[k]) for k in METRIC_NAMES)


def test_state_of_an_unknown_format_version_is_refused() -> None:
    from diffcps_ray.algorithm.agent import STATE_DICT_VERSION
    from diffcps_ray.errors import ConfigError

    agent = DiffCPSAgent(OBS, ACT, _settings())
    state = agent.state_dict()
    assert state["version"] == STATE_DICT_VERSION
    state["version"] = 99
    with pytest.raises(ConfigError) as caught:
        agent.load_state_dict(state)
    assert str(caught.value) == (
        "This DiffCPS agent state has format version 99; this diffcps-ray reads versions 1, 2."
    )
    # Version 1 states (optimisers always inside) still load.
    old = DiffCPSAgent(OBS, ACT, _settings()).state_dict() | {"version": 1}
    agent.load_state_dict(old)


def test_acting_with_diverged_weights_is_one_sentence() -> None:
    from diffcps_ray.algorithm.agent import DivergedError

    agent = DiffCPSAgent(OBS, ACT, _settings())
    with torch.no_grad():
        next(agent.critic_target.parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError, match=r"^the target critics' Q-values are not finite: "
                                            r"the weights diverged$"):
        agent.act(torch.zeros(3, OBS))
