"""DiffCPSConfig: fields derived from DiffCPSSettings, per-task defaults, plain validation
errors, and the RLModule acting on its own and inside a real RLlib env runner (no Ray)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.data.generate import generate_dataset
from diffcps_ray.data.shards import write_shards
from diffcps_ray.errors import ConfigError, MissingDataError, UnknownTaskError
from diffcps_ray.rllib.config import DIFFCPS_FIELDS, DiffCPSConfig, register_task_env

TASK = "pointmaze-umaze"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rllib-config-data")
    write_shards(generate_dataset(TASK, 400, seed=0), TASK, root, "generated")
    return root


def test_fields_are_the_settings_dataclass_fields():
    assert set(DIFFCPS_FIELDS) == {f.name for f in dataclasses.fields(DiffCPSSettings)}
    config = DiffCPSConfig()
    for name in DIFFCPS_FIELDS:
        assert getattr(config, name) is None  # None: the task's default


def test_training_declares_and_documents_every_setting():
    """training() names each DiffCPSSettings field as a keyword and documents it."""
    import inspect

    from ray.rllib.algorithms.algorithm_config import NotProvided

    params = inspect.signature(DiffCPSConfig.training).parameters
    own = {name for name, p in params.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY}  # fmt: skip
    assert own == set(DIFFCPS_FIELDS) | {"gradient_steps_per_iteration"}
    assert all(params[name].default is NotProvided for name in own)
    doc = inspect.getdoc(DiffCPSConfig.training)
    args = doc.split("Args:", 1)[1]
    for name in own:
        assert f"\n    {name}: " in args, f"training() does not document {name}"
    # Every keyword lands on its attribute (and RLlib's own keywords still pass through).
    config = DiffCPSConfig().training(**{name: i + 1 for i, name in enumerate(sorted(own))},
                                      lr=0.5)  # fmt: skip
    assert [getattr(config, name) for name in sorted(own)] == list(range(1, len(own) + 1))
    assert config.lr == 0.5


def test_task_table_defaults_and_overrides_in_any_order():
    # The override is given before the task: it still wins over the task's table row.
    config = DiffCPSConfig().training(kappa=0.123).environment(task="antmaze-umaze-diverse-v2")
    settings = config.get_diffcps_settings()
    table = DiffCPSSettings.for_task("antmaze-umaze-diverse-v2")
    assert settings.kappa == 0.123
    assert settings.max_q_backup is True and settings.max_q_backup == table.max_q_backup
    assert settings.grad_norm == table.grad_norm == 3.0
    assert settings.reward_tune == "cql_antmaze"
    assert config.resolved_eval_episodes == 100
    assert config.resolved_gradient_steps == 1000
    hopper = DiffCPSConfig().environment(task="hopper-medium-v2")
    assert hopper.resolved_eval_episodes == 10
    assert hopper.get_diffcps_settings().kappa == 0.05
    # Setting a field back to None restores the task's value.
    config.training(kappa=None)
    assert config.get_diffcps_settings().kappa == table.kappa


def test_spaces_come_from_the_registry():
    config = DiffCPSConfig().environment(task="antmaze-large-play-v2")
    assert config.observation_space.shape == (29,)
    assert config.action_space.shape == (8,)
    assert np.all(config.action_space.low == -1) and np.all(config.action_space.high == 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kappa": 0.0}, "kappa must be positive"),
        ({"kappa": -1.0}, "kappa must be positive"),
        ({"lambda_clip": -0.1}, "lambda_clip must be >= 0"),
        ({"lambda_clip": 150.0}, "must not exceed lambda_max"),
        ({"T": 0}, "must be at least 1"),
        ({"gradient_steps_per_iteration": 0}, "gradient_steps_per_iteration must be"),
    ],
)
def test_validation_messages(data_root, overrides, message):
    config = DiffCPSConfig().environment(task=TASK).offline_data(data_root=data_root)
    config.training(**overrides)
    with pytest.raises(ConfigError, match=message) as info:
        config.validate()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("builder", "overrides", "message"),
    [
        ("training", {"kappa": 0.0},
         "kappa must be positive (it bounds the diffusion loss), got 0.0."),
        ("training", {"batch_size": 2.5}, "batch_size must be an integer, got 2.5."),
        ("training", {"reward_tune": "double"},
         "reward_tune must be one of 'none' or 'cql_antmaze', got 'double'."),
        ("training", {"gradient_steps_per_iteration": True},
         "gradient_steps_per_iteration must be an integer at least 1, got True."),
        ("evaluation", {"eval_interval": -1},
         "eval_interval must be an integer 0 or more, got -1."),
        ("evaluation", {"eval_num_envs": 0},
         "eval_num_envs must be an integer at least 1, got 0."),
        ("training", {"lambda_clip": 150.0},
         "lambda_clip (150.0) must not exceed lambda_max (100.0)."),
    ],
)  # fmt: skip
def test_validate_says_what_is_wrong_in_one_sentence(data_root, builder, overrides, message):
    config = DiffCPSConfig().environment(task=TASK).offline_data(data_root=data_root)
    getattr(config, builder)(**overrides)
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert str(info.value) == message


def test_unknown_task_and_missing_data(tmp_path, data_root):
    with pytest.raises(UnknownTaskError, match="did you mean 'pointmaze-umaze'"):
        DiffCPSConfig().environment(task="pointmaze-umaz").validate()
    missing = DiffCPSConfig().environment(task="hopper-medium-v2").offline_data(data_root=tmp_path)
    with pytest.raises(MissingDataError, match=r"python -m diffcps_ray\.data convert"):
        missing.validate()
    with pytest.raises(ConfigError, match="No data given"):
        DiffCPSConfig().environment(task=TASK).validate()
    with pytest.raises(ConfigError, match="No task"):
        DiffCPSConfig().offline_data(data_root=data_root).validate()
    # input_ naming a task directory works; one without a manifest says how to make it.
    ok = DiffCPSConfig().environment(task=TASK).offline_data(input_=str(data_root / TASK))
    ok.validate()
    empty = DiffCPSConfig().environment(task=TASK).offline_data(input_=str(tmp_path / TASK))
    with pytest.raises(MissingDataError, match=r"python -m diffcps_ray\.data generate"):
        empty.validate()
    # Data of another shape than the task's.
    wrong = DiffCPSConfig().environment(task="hopper-medium-v2")
    wrong.offline_data(input_=str(data_root / TASK))
    with pytest.raises(ConfigError, match="holds data for 'pointmaze-umaze'"):
        wrong.validate()


@pytest.mark.parametrize(
    ("builder", "rllib_field", "value", "instead"),
    [
        ("training", "lr", 3e-4, "actor_lr, critic_lr and lambda_lr"),
        ("training", "train_batch_size_per_learner", 256, "batch_size"),
        ("training", "train_batch_size", 256, "batch_size"),
        ("training", "minibatch_size", 64, "batch_size"),
        ("training", "grad_clip", 9.0, "grad_norm"),
        ("training", "grad_clip_by", "value", "grad_norm"),
        ("evaluation", "evaluation_interval", 1, "eval_interval"),
        ("evaluation", "evaluation_duration", 50, "eval_episodes"),
        ("evaluation", "evaluation_num_env_runners", 2, "eval_num_envs"),
        ("env_runners", "num_env_runners", 2, "num_learners"),
    ],
)
def test_rllib_fields_diffcps_does_not_use_are_rejected_naming_its_own(
    data_root, builder, rllib_field, value, instead
):
    config = DiffCPSConfig().environment(task=TASK).offline_data(data_root=data_root)
    getattr(config, builder)(**{rllib_field: value})
    with pytest.raises(ConfigError, match=f"RLlib's {rllib_field} ") as info:
        config.validate()
    message = str(info.value)
    assert instead in message and "\n" not in message and message.endswith("instead.")
    # At RLlib's default the field is harmless and the config validates.
    DiffCPSConfig().environment(task=TASK).offline_data(data_root=data_root).validate()


def _module(config: DiffCPSConfig, inference_only: bool = False):
    spec = config.get_rl_module_spec()
    spec.inference_only = inference_only
    return spec.build()


def test_module_forward_returns_valid_actions_and_shares_the_agents_parameters():
    from ray.rllib.core.columns import Columns

    config = DiffCPSConfig().environment(task=TASK).training(batch_size=8)
    module = _module(config)
    agent_params = {id(p) for net in (module.agent.actor, module.agent.critic) for p in
                    net.parameters()}
    assert agent_params <= {id(p) for p in module.parameters()}
    obs = torch.randn(5, 6)
    actions = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    assert actions.shape == (5, 2)
    assert torch.all(actions.abs() <= 1.0) and torch.isfinite(actions).all()
    # An inference-only module (what env runners build) drops the training-only networks
    # and takes its weights from the full module.
    light = _module(config, inference_only=True)
    assert not hasattr(light, "critic") and hasattr(light, "critic_target")
    light.set_state(module.get_state(inference_only=True))
    for name, value in light.state_dict().items():
        torch.testing.assert_close(value, module.state_dict()[name])
    pairs = module.get_target_network_pairs()
    assert (module.critic, module.critic_target) in pairs
    q = module.forward_target({Columns.OBS: obs, Columns.ACTIONS: actions})["q_target"]
    assert q.shape == (5,)


def test_rllib_env_runner_acts_with_the_module():
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = (
        DiffCPSConfig()
        .environment(register_task_env(TASK), task=TASK)
        .training(batch_size=8)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
    )
    runner = SingleAgentEnvRunner(config=config)
    try:
        episodes = runner.sample(num_timesteps=12, random_actions=False)
        actions = np.concatenate([np.asarray(e.get_actions()) for e in episodes])
    finally:
        runner.stop()
    assert actions.shape[1] == 2 and len(actions) >= 12
    assert np.isfinite(actions).all() and np.abs(actions).max() <= 1.0
