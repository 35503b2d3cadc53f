"""Settings: the per-task table, validation messages; the buffer and reward tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcps_ray.algorithm.buffer import TransitionBuffer
from diffcps_ray.algorithm.config import TASK_SETTINGS, DiffCPSSettings
from diffcps_ray.algorithm.rewards import tune_rewards
from diffcps_ray.errors import ConfigError, DataError, UnknownTaskError


def test_defaults_are_the_authors_constants() -> None:
    s = DiffCPSSettings()
    assert (s.T, s.beta_schedule, s.hidden_dim, s.time_embed_dim) == (5, "vp", 256, 16)
    assert (s.gamma, s.tau, s.batch_size, s.lambda_max) == (0.99, 0.005, 256, 100.0)
    assert (s.critic_lr, s.lambda_lr, s.num_backup_samples) == (3e-4, 3e-5, 10)
    assert (s.ema_decay, s.ema_interval, s.ema_start_step) == (0.995, 5, 1000)
    assert s.num_eval_candidates == 50 and s.n_timesteps == 5


# task, (actor_lr, lambda_init, max_q_backup, kappa, lambda_clip, grad_norm, freq, reward_tune)
TABLE = [
    ("halfcheetah-medium-v2", (3e-4, 1.0, False, 0.06, 0.0, 9.0, 2, "none")),
    ("walker2d-medium-v2", (3e-4, 1.0, False, 0.03, 0.0, 1.0, 2, "none")),
    ("hopper-medium-expert-v2", (3e-4, 1.0, False, 0.03, 0.0, 5.0, 2, "none")),
    ("antmaze-umaze-v0", (3e-4, 3.0, False, 0.2, 0.3, 2.0, 2, "cql_antmaze")),
    ("antmaze-umaze-diverse-v2", (3e-4, 3.0, True, 0.09, 0.3, 3.0, 2, "cql_antmaze")),
    ("antmaze-medium-play-v2", (1e-3, 1.0, True, 0.3, 0.3, 2.0, 2, "cql_antmaze")),
    ("antmaze-large-diverse-v0", (3e-4, 0.5, True, 0.2, 0.3, 7.0, 4, "cql_antmaze")),
    ("pointmaze-medium", (3e-4, 1.0, False, 0.05, 0.0, 9.0, 2, "none")),
]


@pytest.mark.parametrize(("task", "row"), TABLE)
def test_for_task_applies_the_table(task: str, row: tuple) -> None:
    s = DiffCPSSettings.for_task(task)
    got = (s.actor_lr, s.lambda_init, s.max_q_backup, s.kappa, s.lambda_clip, s.grad_norm,
           s.freq, s.reward_tune)  # fmt: skip
    assert got == row
    assert s.critic_lr == 3e-4  # the critic's lr is fixed for every task


def test_table_covers_locomotion_antmaze_under_both_versions_and_pointmaze() -> None:
    locomotion = [n for n in TASK_SETTINGS if n.endswith("-v2") and not n.startswith("antmaze")]
    assert len(locomotion) == 9
    for maze in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play",
                 "large-diverse"):  # fmt: skip
        assert TASK_SETTINGS[f"antmaze-{maze}-v0"] == TASK_SETTINGS[f"antmaze-{maze}-v2"]
    assert {"pointmaze-umaze", "pointmaze-medium", "pointmaze-large"} <= set(TASK_SETTINGS)


def test_for_task_overrides_win_and_are_validated() -> None:
    s = DiffCPSSettings.for_task("hopper-medium-v2", kappa=0.2, lambda_clip=1.5)
    assert (s.kappa, s.lambda_clip) == (0.2, 1.5)
    with pytest.raises(ConfigError, match="kappa must be positive"):
        DiffCPSSettings.for_task("hopper-medium-v2", kappa=0.0)


def test_unknown_task_names_close_matches() -> None:
    with pytest.raises(UnknownTaskError, match="Did you mean hopper-medium-v2"):
        DiffCPSSettings.for_task("hopper-medium-v3")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kappa": -0.1}, "kappa must be positive"),
        ({"lambda_clip": -1.0}, "lambda_clip must be >= 0"),
        ({"lambda_clip": 200.0}, r"lambda_clip \(200.0\) must not exceed lambda_max \(100.0\)"),
        ({"T": 0}, "T \\(the number of diffusion steps\\) must be at least 1"),
        ({"freq": 0}, "freq must be at least 1"),
        ({"gamma": 1.5}, r"gamma must be in \(0, 1\], got 1.5"),
        ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\), got 1.0"),
        ({"time_embed_dim": 5}, "time_embed_dim must be a multiple of 2 and at least 4"),
        ({"grad_norm": float("inf")}, "grad_norm must be a finite number"),
        ({"max_q_backup": "maybe"}, "max_q_backup must be true or false, got 'maybe'"),
        ({"vp_beta_min": 20.0}, "0 < vp_beta_min < vp_beta_max"),
        ({"reward_tune": "cql"}, "reward_tune must be one of"),
        ({"beta_schedule": "cosine"}, "beta_schedule must be one of"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"kappa": float("nan")}, "kappa must be a finite number"),
        ({"kapa": 0.1}, "Unknown DiffCPS setting\\(s\\): kapa. Did you mean kappa\\?"),
    ],
)
def test_validation_messages_are_plain_sentences(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        DiffCPSSettings().replace(**overrides)
    assert str(info.value).endswith((".", "?"))


@pytest.mark.parametrize("name", DiffCPSSettings.field_names())
def test_every_field_checks_its_type(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}\b.* must be .*, got <object") as info:
        DiffCPSSettings().replace(**{name: object()})
    assert "\n" not in str(info.value)


def test_validate_on_a_directly_built_dataclass() -> None:
    with pytest.raises(ConfigError, match="lambda_clip"):
        DiffCPSSettings(lambda_clip=0.5, lambda_max=0.1).validate()


# --- rewards and buffer ------------------------------------------------------------------
def test_tune_rewards() -> None:
    r = np.array([0.0, 1.0], dtype=np.float32)
    tuned = tune_rewards(r, "cql_antmaze")
    assert tuned.tolist() == [-2.0, 2.0] and tuned.dtype == np.float32
    assert tune_rewards(torch.tensor([0.5]), "none").item() == 0.5
    with pytest.raises(ConfigError):
        tune_rewards(r, "iql")


def _transitions(n: int = 50) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "obs": rng.normal(size=(n, 4)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "rewards": rng.integers(0, 2, size=n).astype(np.float32),
        "new_obs": rng.normal(size=(n, 4)).astype(np.float32),
        "terminateds": rng.random(n) < 0.3,
        "truncateds": np.zeros(n, dtype=bool),
    }


def test_buffer_packs_columns_and_tunes_rewards_once() -> None:
    data = _transitions()
    buffer = TransitionBuffer(data, reward_tune="cql_antmaze")
    assert buffer.data.is_contiguous() and buffer.data.shape == (50, 4 + 2 + 1 + 4 + 1)
    columns = buffer.all()
    for name in ("obs", "actions", "new_obs"):
        np.testing.assert_array_equal(columns[name].numpy(), data[name])
    np.testing.assert_array_equal(columns["rewards"].numpy(), (data["rewards"] - 0.5) * 4)
    np.testing.assert_array_equal(columns["terminateds"].numpy(), data["terminateds"])


def test_buffer_sampling_is_uniform_with_replacement_and_seeded() -> None:
    buffer = TransitionBuffer(_transitions(10))
    first = buffer.sample(5000, torch.Generator().manual_seed(0))
    again = buffer.sample(5000, torch.Generator().manual_seed(0))
    assert torch.equal(first["obs"], again["obs"])
    rows = torch.cat([first["obs"], first["actions"]], dim=1)
    table = torch.cat([buffer.all()["obs"], buffer.all()["actions"]], dim=1)
    index = (rows.unsqueeze(1) == table.unsqueeze(0)).all(-1).float().argmax(1)
    counts = torch.bincount(index, minlength=10)
    assert counts.min() > 400 and counts.max() < 600  # 500 expected per row
    # rows stay intact: reward and next state belong to the sampled transition
    torch.testing.assert_close(first["new_obs"], buffer.all()["new_obs"][index])


def test_buffer_rejects_inconsistent_columns() -> None:
    data = _transitions()
    data["rewards"] = data["rewards"][:-1]
    with pytest.raises(DataError, match="differ in length"):
        TransitionBuffer(data)
    del data["new_obs"]
    with pytest.raises(DataError, match="new_obs"):
        TransitionBuffer(data)


def test_numpy_scalars_and_strings_are_read_as_the_declared_types() -> None:
    s = DiffCPSSettings().replace(freq=np.int64(3), kappa=np.float64(0.1), T="7",
                                  max_q_backup="true", lambda_clip=1)  # fmt: skip
    assert (s.freq, s.kappa, s.T, s.max_q_backup, s.lambda_clip) == (3, 0.1, 7, True, 1.0)
    assert type(s.freq) is int and type(s.lambda_clip) is float
    with pytest.raises(ConfigError, match="freq must be an integer, got True"):
        DiffCPSSettings().replace(freq=True)
    with pytest.raises(ConfigError, match="kappa must be a number, got 'abc'"):
        DiffCPSSettings().replace(kappa="abc")
