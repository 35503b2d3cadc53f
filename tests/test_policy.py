"""Trained policies without Ray: load_policy from every kind of PATH, the export format,
the sweep's policy export, RLlib's own ways (get_module, RLModule.from_checkpoint), the
maze rollout figure, and bad input answered with one sentence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from diffcps_ray.policy import POLICY_FORMAT_VERSION, PolicyError, export_sweep_policies
from diffcps_ray.policy.core import POLICY_FILE, WEIGHTS_FILE
from diffcps_ray.policy.sources import exported_policies
from tests.conftest import POLICY_TASK

ROOT = Path(__file__).resolve().parents[1]
MODULE_PATH = Path("checkpoint", "learner_group", "learner", "rl_module", "default_policy")


def _observations(count: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.5, 1.5, (count, 6)).astype(np.float32)


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.slow
def test_train_exports_its_final_policy(trained_run: Path) -> None:
    summary = json.loads((trained_run / "summary.json").read_text())
    policy_dir = trained_run / "policy"
    assert summary["policy"] == str(policy_dir)
    assert sorted(p.name for p in policy_dir.iterdir()) == [POLICY_FILE, WEIGHTS_FILE]
    meta = json.loads((policy_dir / POLICY_FILE).read_text())
    assert meta["format_version"] == POLICY_FORMAT_VERSION
    assert (meta["task"], meta["obs_dim"], meta["act_dim"]) == (POLICY_TASK, 6, 2)
    assert meta["settings"]["batch_size"] == 16
    assert meta["eval_env"] is None  # generated data: the task's own simulator
    assert meta["score"] == pytest.approx(summary["final_score"])
    assert meta["provenance"]["kind"] == "train"
    assert meta["provenance"]["iteration"] == 2
    assert meta["provenance"]["num_gradient_steps"] == 40
    # The documented weights format: a flat dict of float32 tensors, weights_only-loadable.
    import torch

    weights = torch.load(policy_dir / WEIGHTS_FILE, weights_only=True)
    assert {name.split(".")[0] for name in weights} == {"actor", "critic_target"}
    assert all(t.dtype == torch.float32 for t in weights.values())


@pytest.mark.slow
def test_loaded_policy_acts_like_the_rl_module_in_a_fresh_process_without_ray(
    trained_run: Path, tmp_path: Path
) -> None:
    """The data directory is gone; the child never imports Ray; actions equal RLlib's."""
    obs = _observations()
    np.save(tmp_path / "obs.npy", obs)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from diffcps_ray import load_policy

        obs = np.load({str(tmp_path / "obs.npy")!r})
        for name, path in (("export", {str(trained_run)!r}),
                           ("checkpoint", {str(trained_run / "checkpoint")!r})):
            policy = load_policy(path, device="cpu")
            assert (policy.obs_dim, policy.act_dim, policy.task) == (6, 2, {POLICY_TASK!r})
            assert policy.settings.num_eval_candidates == 50
            policy.seed(11)
            np.save({str(tmp_path)!r} + f"/{{name}}.npy", policy.act(obs))
        assert "ray" not in sys.modules, sorted(m for m in sys.modules if m.startswith("ray"))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]

    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(str(trained_run / MODULE_PATH))
    module.agent.eval_generator.manual_seed(11)
    expected = module.forward_inference({Columns.OBS: torch.from_numpy(obs)})[Columns.ACTIONS]
    for name in ("export", "checkpoint"):
        actions = np.load(tmp_path / f"{name}.npy")
        assert actions.shape == (7, 2) and np.all(np.abs(actions) <= 1.0)
        np.testing.assert_array_equal(actions, expected.numpy())


@pytest.mark.slow
def test_checkpoint_policy_loads_without_any_ray_pickle(trained_run: Path, tmp_path: Path
                                                        ) -> None:
    """load_policy reads only the checkpoint's policy/ (JSON + weights_only tensors)."""
    from diffcps_ray import load_policy

    copy = tmp_path / "checkpoint"
    shutil.copytree(trained_run / "checkpoint", copy)
    pickles = [p for p in copy.rglob("*") if p.suffix in (".pkl", ".msgpack")]
    assert pickles  # RLlib's own state files were there ...
    for path in pickles:
        path.unlink()  # ... and are not needed to load the policy
    assert sorted(p.name for p in (copy / "policy").iterdir()) == [POLICY_FILE, WEIGHTS_FILE]
    loaded = load_policy(copy, seed=3)
    original = load_policy(trained_run / "checkpoint", seed=3)
    assert (loaded.task, loaded.obs_dim, loaded.act_dim) == (POLICY_TASK, 6, 2)
    assert loaded.provenance["num_gradient_steps"] == 40
    obs = _observations()
    np.testing.assert_array_equal(loaded.act(obs), original.act(obs))

    # A checkpoint without policy/ (saved by an older diffcps-ray) says what to do.
    shutil.rmtree(copy / "policy")
    with pytest.raises(PolicyError) as caught:
        load_policy(copy)
    assert str(caught.value) == (
        f"{copy} has no policy/policy.json: it was saved before checkpoints carried their "
        "policy; restore it with Ray (diffcps_ray.rllib.DiffCPS.from_checkpoint) and save "
        "it again."
    )


@pytest.mark.slow
def test_act_rejects_observations_of_the_wrong_width(trained_run: Path) -> None:
    from diffcps_ray import load_policy

    policy = load_policy(trained_run)
    assert policy.act(_observations(1)[0]).shape == (2,)
    with pytest.raises(PolicyError, match=r"shape \(B, 6\)"):
        policy.act(np.zeros((3, 5), np.float32))


@pytest.mark.slow
def test_get_module_returns_the_acting_module(ray_session, tmp_path: Path) -> None:
    import torch
    from ray.rllib.core.columns import Columns

    from diffcps_ray.data.generate import generate_dataset
    from diffcps_ray.data.shards import write_shards
    from diffcps_ray.rllib import DiffCPSConfig
    from diffcps_ray.rllib.rl_module import DiffCPSTorchRLModule

    write_shards(generate_dataset(POLICY_TASK, 300, seed=2), POLICY_TASK, tmp_path, "generated")
    algo = (
        DiffCPSConfig().environment(task=POLICY_TASK).offline_data(data_root=str(tmp_path))
        .training(gradient_steps_per_iteration=2, batch_size=8).evaluation(eval_interval=0)
        .debugging(log_level="ERROR").build_algo()
    )  # fmt: skip
    try:
        module = algo.get_module()
        assert isinstance(module, DiffCPSTorchRLModule)
        assert algo.get_module("another_policy") is None
        out = module.forward_inference({Columns.OBS: torch.zeros(4, 6)})
        assert out[Columns.ACTIONS].shape == (4, 2)
    finally:
        algo.stop()


@pytest.mark.slow
def test_sweep_export_writes_best_and_final_per_seed(smoke_sweep: Path, tmp_path: Path) -> None:
    from diffcps_ray.tune.record import CheckpointKind, ExperimentRecord, Phase

    experiment = tmp_path / "smoke"
    shutil.copytree(smoke_sweep, experiment)
    shutil.rmtree(experiment / "policies")
    record = ExperimentRecord.load(experiment)
    rows = record.trials_of(Phase.CONFIRM)
    lines: list[str] = []
    written = export_sweep_policies(experiment, record, log=lines.append)
    assert sorted(p.relative_to(experiment / "policies").as_posix() for p in written) == [
        f"{POLICY_TASK}/seed_{row.seed}/{kind}" for row in sorted(rows, key=lambda r: r.seed)
        for kind in ("best", "final")]
    for row in rows:
        for kind in CheckpointKind:
            ref = row.checkpoint(kind)
            meta = json.loads((experiment / "policies" / POLICY_TASK / f"seed_{row.seed}"
                               / str(kind) / POLICY_FILE).read_text())
            assert meta["score"] == pytest.approx(ref.score)
            assert meta["provenance"]["iteration"] == ref.iteration
            assert meta["provenance"]["checkpoint"].startswith(ref.path)
            assert meta["provenance"]["checkpoint_kind"] == str(kind)
            assert meta["provenance"]["trial_id"] == row.trial_id
    assert any("final" in line for line in lines)
    # A storage URI that is not local is skipped with a line, nothing written.
    assert export_sweep_policies("s3://bucket/smoke", record, log=lines.append) == []
    assert "not a local directory" in lines[-1]


@pytest.mark.slow
def test_experiment_gives_the_best_confirmed_policy(smoke_sweep: Path) -> None:
    from diffcps_ray import load_policy
    from diffcps_ray.policy.sources import UnknownPolicyTaskError

    policy = load_policy(smoke_sweep)
    assert policy.task == POLICY_TASK and policy.provenance["phase"] == "confirm"
    trial = smoke_sweep / next(
        r["path"] for r in json.loads((smoke_sweep / "experiment.json").read_text())["trials"]
        if r["phase"] == "confirm" and r["seed"] == policy.provenance["seed"]
    )
    assert load_policy(trial).provenance["trial_id"] == policy.provenance["trial_id"]
    with pytest.raises(UnknownPolicyTaskError) as caught:
        load_policy(smoke_sweep, task="hopper-medium-v2")
    assert str(caught.value) == (
        f"{smoke_sweep} has no task 'hopper-medium-v2'; it has {POLICY_TASK}."
    )


@pytest.mark.slow
def test_report_draws_maze_rollouts_and_lists_the_policies(smoke_sweep: Path,
                                                           tmp_path: Path) -> None:
    from analysis.aggregate import aggregate

    experiment = tmp_path / "smoke"
    shutil.copytree(smoke_sweep, experiment)
    out = tmp_path / "report"
    aggregate(experiment, out, reps=50, rollout_episodes=3)
    figure = out / "figures" / f"rollouts_{POLICY_TASK}.png"
    assert figure.is_file() and figure.stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert f"![rollouts_{POLICY_TASK}](figures/rollouts_{POLICY_TASK}.png)" in report
    assert "3 evaluation episodes" in report
    assert f"`policies/{POLICY_TASK}/seed_1/final`" in report


def test_rollout_paths_start_at_reset_and_carry_the_goal(tmp_path: Path) -> None:
    """The observer the figure uses, with the scripted expert (no training needed)."""
    from analysis.plots import plot_rollouts
    from diffcps_ray.envs.evaluate import evaluate_policy
    from diffcps_ray.envs.pointmaze import PointMazeExpert
    from diffcps_ray.envs.tasks import get_task
    from diffcps_ray.policy.rollouts import PathRecorder, Rollouts

    recorder = PathRecorder()
    result = evaluate_policy(POLICY_TASK, PointMazeExpert("umaze"), 3, seed=4,
                             num_envs=2, observer=recorder)
    assert sorted(recorder.episodes) == [0, 1, 2]
    for episode in recorder.episodes.values():
        assert len(episode.xy) == get_task(POLICY_TASK).max_episode_steps + 1
        assert episode.goal is not None and episode.success  # the expert gets there
        assert np.linalg.norm(episode.xy[-1] - episode.goal) < 0.45
    assert result["success_rate"] == 1.0
    walls = recorder.walls
    assert len(walls) == sum(cell == 1 for row in PointMazeExpert("umaze").maze_map
                             for cell in row)
    rollouts = Rollouts(POLICY_TASK, [recorder.episodes[k] for k in range(3)], walls, result)
    assert plot_rollouts(rollouts, tmp_path / "rollouts.png")
    assert (tmp_path / "rollouts.png").stat().st_size > 10_000


def test_an_export_being_written_is_not_listed(tmp_path: Path) -> None:
    seed_dir = tmp_path / "policies" / POLICY_TASK / "seed_1"
    for name in ("final", ".best.tmp-123-abcdef12"):  # the second: a writer's staging
        (seed_dir / name).mkdir(parents=True)
        (seed_dir / name / POLICY_FILE).write_text("{}")
    assert exported_policies(tmp_path) == {POLICY_TASK: [seed_dir / "final"]}


def test_a_path_that_is_no_run_experiment_or_policy(tmp_path: Path) -> None:
    from diffcps_ray import load_policy

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} is not a run, experiment or policy directory: it has no policy.json, "
        "experiment.json, summary.json or checkpoint."
    )
    with pytest.raises(PolicyError, match="no such directory"):
        load_policy(tmp_path / "missing")
    with pytest.raises(PolicyError, match="copy the directory to this machine"):
        load_policy("s3://bucket/run")
    assert _tree(tmp_path) == {"notes.txt"}


@pytest.mark.slow
def test_a_newer_policy_format_is_refused(trained_run: Path, tmp_path: Path) -> None:
    from diffcps_ray import load_policy

    newer = tmp_path / "newer"
    shutil.copytree(trained_run / "policy", newer)
    meta = json.loads((newer / POLICY_FILE).read_text())
    meta["format_version"] = POLICY_FORMAT_VERSION + 1
    (newer / POLICY_FILE).write_text(json.dumps(meta))
    before = _tree(tmp_path)
    with pytest.raises(PolicyError) as caught:
        load_policy(newer)
    assert str(caught.value) == (
        f"{newer} was written in policy format {POLICY_FORMAT_VERSION + 1} by a newer "
        f"diffcps-ray; this version reads format {POLICY_FORMAT_VERSION}, so upgrade "
        "diffcps-ray to load it."
    )
    assert _tree(tmp_path) == before
