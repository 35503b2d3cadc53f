"""The DiffCPS RLlib Algorithm end to end on real shards (tiny step counts, few episodes):
metrics and evaluation keys, checkpoint restore continuing with the same losses, a
converted D4RL locomotion file, disjoint data splits and a two-learner run."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcps_ray.data.generate import generate_dataset
from diffcps_ray.data.shards import materialize, read_dataset, write_shards
from diffcps_ray.rllib import DiffCPS, DiffCPSConfig
from diffcps_ray.rllib.offline_data import split_for_learners

POINTMAZE = "pointmaze-umaze"
HOPPER = "hopper-medium-v2"
LEARNER_KEYS = ("critic_loss", "diffusion_loss", "actor_loss", "q_loss", "lambda",
                "lambda_clamped", "q_mean", "steps_per_s", "sample_time_fraction",
                "num_gradient_steps", "dataset_rows")  # fmt: skip
EVAL_KEYS = ("normalized_score", "episode_return_mean", "best_normalized_score")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pointmaze_root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rllib-pointmaze")
    write_shards(generate_dataset(POINTMAZE, 1200, seed=0), POINTMAZE, root, "generated",
                 rows_per_shard=400)
    return root


@pytest.fixture(scope="module")
def hopper_root(tmp_path_factory: pytest.TempPathFactory):
    """A D4RL-format hopper file (real Hopper-v5 rollouts) converted by the data CLI."""
    from diffcps_ray.data.__main__ import main as data_main
    from tests.test_data_formats import hopper_episodes, write_d4rl_locomotion

    tmp = tmp_path_factory.mktemp("rllib-hopper")
    hdf5 = write_d4rl_locomotion(tmp / "hopper_medium-v2.hdf5", hopper_episodes())
    assert data_main(["convert", "--d4rl", str(hdf5), "--task", HOPPER, "--out",
                      str(tmp / "data")]) == 0
    return tmp / "data"


def small_config(task: str, root, **training) -> DiffCPSConfig:
    return (
        DiffCPSConfig()
        .environment(task=task)
        .offline_data(data_root=root)
        .training(gradient_steps_per_iteration=6, batch_size=32, **training)
        .evaluation(eval_interval=2, eval_episodes=2, eval_num_envs=2)
        .debugging(seed=7)
    )


def learner_metrics(result: dict) -> dict[str, float]:
    return result["learners"]["default_policy"]


def test_train_metrics_evaluation_and_checkpoint_restore(ray_session, pointmaze_root, tmp_path):
    algo = small_config(POINTMAZE, pointmaze_root).build_algo()
    try:
        first = algo.train()
        # Before the first evaluation the keys exist (NaN), so Tune always finds them.
        assert set(EVAL_KEYS) | {"success_rate"} <= set(first["evaluation"])
        assert math.isnan(first["evaluation"]["normalized_score"])
        second = algo.train()
        for result in (first, second):
            metrics = learner_metrics(result)
            for key in LEARNER_KEYS:
                assert math.isfinite(metrics[key]), key
        assert first["num_gradient_steps"] == 6 and second["num_gradient_steps"] == 12
        assert learner_metrics(second)["num_gradient_steps"] == 12
        assert learner_metrics(second)["dataset_rows"] == 1200
        evaluation = second["evaluation"]
        for key in (*EVAL_KEYS, "success_rate"):
            assert math.isfinite(evaluation[key]), key
        assert evaluation["num_evaluations"] == 1
        assert 0.0 <= evaluation["success_rate"] <= 1.0

        checkpoint = algo.save_to_path(str(tmp_path / "checkpoint"))
        check_checkpoint_policy(algo, Path(checkpoint), iteration=2, score=evaluation)
        uninterrupted = [learner_metrics(algo.train()) for _ in range(2)]
        carried = algo.train()["evaluation"]  # iteration 5: no evaluation, carried forward
        assert carried["normalized_score"] == algo.evaluation_metrics()["normalized_score"]
    finally:
        algo.stop()

    restored = DiffCPS.from_checkpoint(checkpoint)
    try:
        assert restored.num_gradient_steps == 12
        resumed = [learner_metrics(restored.train()) for _ in range(2)]
        assert restored.num_gradient_steps == 24
        assert restored.evaluation_metrics()["best_normalized_score"] == pytest.approx(
            max(evaluation["best_normalized_score"],
                restored.evaluation_metrics()["normalized_score"])
        )
    finally:
        restored.stop()
    for expected, actual in zip(uninterrupted, resumed, strict=True):
        for key in ("critic_loss", "diffusion_loss", "actor_loss", "q_loss", "lambda", "q_mean"):
            assert actual[key] == expected[key], key


def check_checkpoint_policy(algo: DiffCPS, checkpoint: Path, iteration: int,
                            score: dict) -> None:
    """The checkpoint's policy/ holds the acting weights in the project's own format."""
    from diffcps_ray.policy.checkpoints import read_checkpoint

    contents = read_checkpoint(checkpoint)
    assert (contents.task, contents.obs_dim, contents.act_dim) == (POINTMAZE, 6, 2)
    assert contents.num_gradient_steps == 12 and contents.iteration == iteration
    assert contents.score == score["normalized_score"]  # evaluated at these weights
    assert contents.settings == algo.config.get_diffcps_settings()
    module = algo.get_module().state_dict()
    assert {name.split(".")[0] for name in contents.weights} == {"actor", "critic_target"}
    for name, value in contents.weights.items():
        assert torch.equal(value, module[name].cpu()), name


def test_learner_owns_registers_and_saves_the_optimisers(ray_session, pointmaze_root):
    from ray.rllib.core import DEFAULT_MODULE_ID

    algo = small_config(POINTMAZE, pointmaze_root).evaluation(eval_interval=0).build_algo()
    try:
        algo.train()

        def inspect(learner) -> dict:
            batch = {"obs": torch.randn(8, 6), "actions": torch.rand(8, 2) * 2 - 1,
                     "rewards": torch.randn(8), "new_obs": torch.randn(8, 6),
                     "terminateds": torch.zeros(8)}  # fmt: skip
            generator = learner.agent.generator.get_state()
            loss = learner.compute_loss_for_module(
                module_id=DEFAULT_MODULE_ID, config=learner.config, batch=batch, fwd_out={}
            )
            state = learner.get_state()
            return {
                "registered": [name for name, _ in
                               learner.get_optimizers_for_module(DEFAULT_MODULE_ID)],
                "module_has_none": learner.agent.optimizers is None,
                "adam_steps": {name: len(opt.state) for name, opt in
                               learner.diffcps_optimizers().items()},
                "loss": (loss.requires_grad, bool(torch.isfinite(loss))),
                "rng_untouched": torch.equal(generator, learner.agent.generator.get_state()),
                "saved": sorted(state["optimizer"]),
                "agent_state": sorted(state["diffcps_agent"]),
            }  # fmt: skip

        (info,) = [r.get() for r in algo.learner_group.foreach_learner(inspect)]
    finally:
        algo.stop()
    assert info["registered"] == ["actor", "critic", "lambda"]
    assert info["module_has_none"]
    assert all(count > 0 for count in info["adam_steps"].values())  # they did the steps
    assert info["loss"] == (True, True) and info["rng_untouched"]
    # RLlib saves the registered optimisers; the agent's state leaves them out.
    assert info["saved"] == [f"default_policy_{n}" for n in ("actor", "critic", "lambda")]
    assert not any(key.endswith("_optimizer") for key in info["agent_state"])


def test_train_results_pass_rllibs_structure_check(ray_session, pointmaze_root):
    from ray.rllib.utils.test_utils import check_train_results_new_api_stack

    config = small_config(POINTMAZE, pointmaze_root).evaluation(eval_interval=2, eval_episodes=1)
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    for result in results:
        check_train_results_new_api_stack(result)
    first, second = results
    # The evaluation came through the metrics logger: NaN before it, then its score.
    assert math.isnan(first["evaluation"]["normalized_score"])
    assert math.isfinite(second["evaluation"]["normalized_score"])
    assert second["evaluation"]["num_evaluations"] == 1
    assert second["timers"]["evaluation_iteration"] > 0
    # "Sampled env steps" are data rows drawn: 6 gradient steps x 32 rows per iteration.
    assert first["env_runners"]["num_env_steps_sampled"] == 6 * 32
    assert second["env_runners"]["num_env_steps_sampled_lifetime"] == 2 * 6 * 32
    assert second["num_gradient_steps"] == 12


def test_converted_d4rl_locomotion_file(ray_session, hopper_root):
    config = small_config(HOPPER, hopper_root).evaluation(eval_interval=1, eval_episodes=2)
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["num_gradient_steps"] == 6
    assert all(math.isfinite(learner_metrics(result)[k]) for k in LEARNER_KEYS)
    assert math.isfinite(result["evaluation"]["normalized_score"])
    assert "success_rate" not in result["evaluation"]  # not a goal task


def test_converted_minari_antmaze_evaluates_in_its_recorded_env(
    ray_session, tmp_path, monkeypatch, caplog
):
    import warnings

    from diffcps_ray.data.__main__ import main as data_main
    from tests.test_minari_eval_env import ENV_ID, EVAL_STEPS, write_minari_antmaze

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_minari_antmaze("test/antmaze/umaze-v1", with_eval_env=True)
    assert data_main(["convert", "--minari", "test/antmaze/umaze-v1", "--task",
                      "antmaze-umaze-v2", "--out", str(tmp_path / "data")]) == 0
    config = small_config("antmaze-umaze-v2", tmp_path / "data").evaluation(eval_interval=1)
    with caplog.at_level("WARNING", logger="diffcps_ray.rllib.algorithm"):
        algo = config.build_algo()
    try:
        result = algo.train()
        spec = algo.evaluation_task
    finally:
        algo.stop()
    # Not the D4RL-matching simulator: the env the data recorded, with its time limit.
    assert spec.eval_env.id == ENV_ID and spec.max_episode_steps == EVAL_STEPS
    lines = [r.getMessage() for r in caplog.records if ENV_ID in r.getMessage()]
    assert len(lines) == 1 and "antmaze-umaze-v2" in lines[0]
    evaluation = result["evaluation"]
    assert evaluation["normalized_score"] == 100 * evaluation["success_rate"]


def test_streaming_split_gives_learners_disjoint_shares(ray_session, pointmaze_root):
    dataset = read_dataset(pointmaze_root / POINTMAZE)
    iterators = split_for_learners(dataset, 2)
    shares: list[dict[str, torch.Tensor] | None] = [None, None]

    def consume(index: int) -> None:  # streaming_split shares are read concurrently
        shares[index] = materialize(iterators[index], columns=("eps_id", "t"))

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    keys = [
        {(int(e), int(t)) for e, t in zip(share["eps_id"], share["t"], strict=True)}
        for share in shares
    ]
    assert len(keys[0]) == len(keys[1]) == 600
    assert not keys[0] & keys[1]
    everything = materialize(dataset, columns=("eps_id", "t"))
    assert keys[0] | keys[1] == {
        (int(e), int(t)) for e, t in zip(everything["eps_id"], everything["t"], strict=True)
    }


def test_two_learners_train_in_lockstep_on_disjoint_halves(ray_session, pointmaze_root):
    config = small_config(POINTMAZE, pointmaze_root).learners(num_learners=2)
    config.training(gradient_steps_per_iteration=3).evaluation(eval_interval=1, eval_episodes=1)
    algo = config.build_algo()
    try:
        result = algo.train()
        states = [
            r.get()
            for r in algo.learner_group.foreach_learner(
                lambda learner: (
                    learner.num_rows,
                    torch.cat([p.detach().reshape(-1) for p in learner.agent.actor.parameters()]),
                    float(learner.agent.lambda_param.detach()),
                )
            )
        ]
    finally:
        algo.stop()
    assert [rows for rows, _, _ in states] == [600, 600]
    # Averaged gradients: both learners hold the same weights after their steps.
    torch.testing.assert_close(states[0][1], states[1][1], rtol=0, atol=0)
    assert states[0][2] == states[1][2]
    assert result["num_gradient_steps"] == 3
    assert np.isfinite(result["evaluation"]["normalized_score"])
