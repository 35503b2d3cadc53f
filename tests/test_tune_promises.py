"""What a sweep promises, fed the inputs that would break it.

"Keeps the best" gets a learning curve that falls; "resumes" gets an interrupt with work
still to come, a hard kill, a suite file changed in between; "reports failures" gets a
task whose every trial diverges. Stand-in trainables (tests/test_tune_support.py) where the
trainable's curve must be chosen; the real DiffCPS through the real command line elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffcps_ray.policy.sources import exportable_checkpoints, load_policy
from diffcps_ray.tune.console import summarise
from diffcps_ray.tune.record import (
    CheckpointKind,
    ExperimentRecord,
    ExperimentStatus,
    Phase,
    TaskStatus,
    TrialStatus,
)
from diffcps_ray.tune.studies import StudyLocation, TaskStudy, sampler_seed
from diffcps_ray.tune.sweep import Sweep
from tests.test_tune_support import (
    StandInTrial,
    make_data,
    tiny_options,
    tiny_suite,
    with_run_options,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
TASK = "pointmaze-umaze"


# --- stand-in trainables: curves chosen by the test ----------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("data"))


def _record(tmp_path: Path) -> ExperimentRecord:
    return ExperimentRecord.load(tmp_path / "runs" / "exp")


def test_a_falling_curve_keeps_its_best_checkpoint(ray_session, tmp_path, data_root) -> None:
    """Scores 30, 50, 10: the best checkpoint is iteration 2's, on disk, beside the last."""
    trainable = with_run_options(StandInTrial, score_curve=[30.0, 50.0, 10.0])
    opts = tiny_options(tmp_path, data_root, num_samples=1, seeds=1)
    Sweep(tiny_suite(iterations=3), opts, "test", resume=False, trainable=trainable).run()
    record = _record(tmp_path)
    experiment = tmp_path / "runs" / "exp"
    for row in record.trials:
        best, final = row.checkpoint(CheckpointKind.BEST), row.checkpoint(CheckpointKind.FINAL)
        assert (best.iteration, best.score) == (2, 50.0), row
        assert final.iteration == 3 and row.score == 10.0
        saved = json.loads((experiment / best.path / "algorithm" / "state.json").read_text())
        assert saved["iteration"] == 2  # the weights that scored 50
        kept = sorted(p.name for p in (experiment / row.path).glob("checkpoint_*"))
        assert len(kept) == 2, kept  # the best and the latest (to resume)


def test_a_task_whose_every_search_trial_fails_says_so(ray_session, tmp_path, data_root) -> None:
    trainable = with_run_options(StandInTrial, nan_when_kappa_above=0.0)
    opts = tiny_options(tmp_path, data_root, num_samples=2, seeds=1)
    suite = tiny_suite()
    sweep = Sweep(suite, opts, "test", resume=False, trainable=trainable, log=lambda _: None)
    sweep.run()
    record = _record(tmp_path)
    state = record.confirm.tasks[TASK]
    assert state.status == TaskStatus.SKIPPED  # not overwritten by "done"
    assert "no successful search trial (2 of 2 failed" in state.reason
    assert "critic_loss became nan" in state.reason
    assert sweep.failed_tasks() == {TASK: f"skipped: {state.reason}"}
    (line,) = summarise(record, suite)
    assert line.startswith(f"{TASK}: no result (skipped: no successful search trial")
    assert record.status == ExperimentStatus.DONE and not record.trials_of(Phase.CONFIRM)


def test_a_run_that_diverges_after_its_best_keeps_that_checkpoint(ray_session, tmp_path,
                                                                 data_root) -> None:
    """The confirmation diverges at iteration 3 after scoring 40 and 60: its best-of-run
    checkpoint is a result, kept and labelled with how the run ended."""
    trainable = with_run_options(StandInTrial, nan_when_kappa=0.05, nan_from_iteration=3,
                                 nan_phase="confirm", score_curve=[40.0, 60.0, 20.0])
    opts = tiny_options(tmp_path, data_root, num_samples=1, seeds=1)
    suite = tiny_suite(iterations=3)
    Sweep(suite, opts, "test", resume=False, trainable=trainable, log=lambda _: None).run()
    record = _record(tmp_path)
    (confirm,) = record.trials_of(Phase.CONFIRM)
    assert confirm.status == TrialStatus.ERROR and "critic_loss became nan" in confirm.error
    best = confirm.checkpoint(CheckpointKind.BEST)
    assert (best.iteration, best.score) == (2, 60.0)
    (item,) = exportable_checkpoints(record)  # its best, not its last checkpoint
    assert item == (confirm, CheckpointKind.BEST, best)
    (line,) = summarise(record, suite)
    assert "seed 1 failed (its best checkpoint, score 60.0 at iteration 2, is kept)" in line


# --- the real command line ------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "PYTHONUNBUFFERED": "1"}
    env.pop("TUNE_GLOBAL_CHECKPOINT_S", None)  # Tune's default save interval, as users run
    return env


def _tune(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diffcps_ray.tune", *args], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def _signal_at(args: list[str], marker: str, sig: int, count: int = 1,
               timeout: float = 600) -> tuple[int, str]:
    """Run the sweep in its own process group; send ``sig`` to the whole group (as a
    terminal's Ctrl-C does) once ``marker`` has been printed ``count`` times."""
    process = subprocess.Popen([sys.executable, "-m", "diffcps_ray.tune", *args], cwd=ROOT,
                               env=_env(), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    lines, seen, sent = [], 0, False
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        seen += marker in line
        if not sent and seen >= count:
            os.killpg(process.pid, sig)
            sent = True
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            break
    code = process.wait(timeout=120)
    assert sent, "".join(lines)[-3000:]
    return code, "".join(lines)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffcps_ray.tune.suites import load_suite

    return make_data(tmp_path_factory.mktemp("smoke-data"),
                     transitions=load_suite("pointmaze").budget("smoke").transitions)


def _own_suite(directory: Path, **smoke_changes: str) -> Path:
    """The pointmaze suite as a file of one's own (its name must be the suite's)."""
    from diffcps_ray.tune.suites import suite_path

    text = suite_path("pointmaze").read_text()
    for old, new in smoke_changes.items():
        assert old in text
        text = text.replace(old, new, 1)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "pointmaze.yaml"
    path.write_text(text)
    return path


SMOKE_CONFIRM = "confirm: {iterations: 2, steps_per_iteration: 20, eval_interval: 1, " \
                "eval_episodes: 2}"


def test_an_interrupted_search_resumes_its_proposals_and_its_budget(tmp_path, smoke_data):
    """Ctrl-C after 2 of 4 proposals, the suite file edited, then --resume: 4 distinct
    configs, each the one an uninterrupted search would propose after the same results,
    and the budget the sweep started with (the changed keys named)."""
    suite_file = _own_suite(tmp_path / "suites")
    storage = tmp_path / "runs"
    args = ["--suite", str(suite_file), "--budget", "smoke", "--tasks", TASK,
            "--num-samples", "4", "--seeds", "1", "--max-concurrent", "1",
            "--data-root", str(smoke_data), "--storage", str(storage), "--name", "cut"]
    code, output = _signal_at(args, "[sweep] started search trial", signal.SIGINT, count=2)
    assert code == 130, output[-3000:]
    assert "Tuner.restore(" not in output  # one way to continue: ours
    assert output.count("Continue with: python -m diffcps_ray.tune") == 1
    _own_suite(tmp_path / "suites", **{SMOKE_CONFIRM: SMOKE_CONFIRM.replace(
        "iterations: 2", "iterations: 4")})
    done = _tune("--storage", str(storage), "--name", "cut", "--resume")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "budget changed since this sweep started (confirm.iterations: 2 -> 4)" in done.stdout
    record = ExperimentRecord.load(storage / "cut")
    (confirm,) = record.trials_of(Phase.CONFIRM)
    assert confirm.iterations == 2  # the recorded budget
    search = sorted(record.trials_of(Phase.SEARCH), key=lambda row: row.study_trial)
    assert [row.study_trial for row in search] == [0, 1, 2, 3]
    sampled = [_sampled(storage / "cut", row) for row in search]
    assert len({tuple(p.values()) for p in sampled}) == 4, sampled
    # The same proposals as one uninterrupted search told the same results in order.
    replay = TaskStudy(StudyLocation("replay", journal=str(tmp_path / "replay.journal")),
                       sampler_seed("pointmaze", TASK), 4, sampled[0])
    from diffcps_ray.tune.suites import load_suite

    space = {k: (r.low, r.high) for k, r in load_suite("pointmaze").tasks[TASK].search.items()}
    for index, row in enumerate(search):
        params, number = replay.propose(index, space)
        assert params == pytest.approx(sampled[index]), index
        replay.tell(number, row.status, row.score)


def _sampled(experiment: Path, row) -> dict[str, float]:
    params = json.loads((experiment / row.path / "params.json").read_text())
    return {"kappa": params["kappa"], "lambda_clip": params["lambda_clip"]}


def test_every_search_trial_diverging_exits_non_zero_naming_the_task(tmp_path, smoke_data):
    """A real NaN from the first iteration (critic learning rate 1e38) in every trial."""
    suite_file = _own_suite(tmp_path / "suites", **{
        "  pointmaze-umaze:\n": "  pointmaze-umaze:\n    overrides: {critic_lr: 1.0e+38}\n"})
    done = _tune("--suite", str(suite_file), "--budget", "smoke", "--tasks", TASK,
                 "--num-samples", "1", "--data-root", str(smoke_data),
                 "--storage", str(tmp_path / "runs"), "--name", "nan")
    assert done.returncode == 3, (done.stdout + done.stderr)[-3000:]
    assert f"{TASK}: no result (skipped: no successful search trial (1 of 1 failed" \
        in done.stdout
    # The evaluation met the diverged weights first: one sentence, not torch's error.
    assert "the weights diverged at iteration 1" in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Finished in ") and f"1 task(s) produced no result: {TASK}" in last
    record = ExperimentRecord.load(tmp_path / "runs" / "nan")
    assert record.confirm.tasks[TASK].status == TaskStatus.SKIPPED


def test_a_hard_kill_mid_search_leaves_no_running_study_trial(tmp_path, smoke_data):
    """SIGKILL to the whole process group once the second search trial has started."""
    import optuna

    storage = tmp_path / "runs"
    args = ["--suite", "pointmaze", "--budget", "smoke", "--tasks", TASK, "--num-samples", "3",
            "--seeds", "1", "--max-concurrent", "1", "--data-root", str(smoke_data),
            "--storage", str(storage), "--name", "killed"]
    code, _output = _signal_at(args, "[sweep] started search trial", signal.SIGKILL, count=2)
    assert code == -signal.SIGKILL
    done = _tune("--storage", str(storage), "--name", "killed", "--resume")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    record = ExperimentRecord.load(storage / "killed")
    search = record.trials_of(Phase.SEARCH)
    assert len(search) == 3 and all(row.complete for row in search)
    sampled = {tuple(_sampled(storage / "killed", row).values()) for row in search}
    assert len(sampled) == 3
    entry = record.search.tasks[TASK]
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=entry.study_name, storage=JournalStorage(
        JournalFileBackend(str(storage / "killed" / entry.optuna_storage))))
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]


def test_an_interrupt_during_the_policy_export_is_finished_by_resume(tmp_path, smoke_data):
    """Ctrl-C as the first policy is exported: either it stops the export (exit 130, the
    record not done) or the export had finished; --resume leaves every policy either way."""
    storage = tmp_path / "runs"
    args = ["--suite", "pointmaze", "--budget", "smoke", "--tasks", TASK, "--num-samples", "2",
            "--seeds", "2", "--data-root", str(smoke_data), "--storage", str(storage),
            "--name", "export"]
    code, output = _signal_at(args, "[policies] ", signal.SIGINT)
    record = ExperimentRecord.load(storage / "export")
    if code == 130:
        assert record.status == ExperimentStatus.INTERRUPTED, output[-2000:]
    else:
        assert code == 0 and record.status == ExperimentStatus.DONE, output[-2000:]
    done = _tune("--storage", str(storage), "--name", "export", "--resume")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    record = ExperimentRecord.load(storage / "export")
    assert record.status == ExperimentStatus.DONE
    policies = sorted(p.parent.relative_to(storage / "export" / "policies").as_posix()
                      for p in (storage / "export" / "policies").glob("*/*/*/policy.json"))
    assert policies == [f"{TASK}/seed_{s}/{k}" for s in (1, 2) for k in ("best", "final")]
    assert load_policy(storage / "export").task == TASK


# --- the shared smoke sweep (tests/conftest.py): real DiffCPS, two seeds ---------------------


def _evaluations(trial_dir: Path) -> dict[int, float]:
    """Iteration -> score of each evaluation that ran (results carry the last one forward)."""
    scores, seen = {}, 0
    for line in (trial_dir / "result.json").read_text().splitlines():
        result = json.loads(line)
        count = result["evaluation"]["num_evaluations"]
        if count > seen:
            scores[result["training_iteration"]] = result["evaluation"]["normalized_score"]
        seen = count
    return scores


def test_every_best_checkpoint_is_the_argmax_of_the_trials_evaluations(smoke_sweep) -> None:
    """Whatever the curve's shape: the recorded and exported best is the top evaluation."""
    record = ExperimentRecord.load(smoke_sweep)
    for row in record.trials_of(Phase.CONFIRM):
        scores = _evaluations(smoke_sweep / row.path)
        top = max(scores.values())
        best = row.checkpoint(CheckpointKind.BEST)
        assert best.score == pytest.approx(top) and scores[best.iteration] == best.score, row
        assert (smoke_sweep / best.path).is_dir()
        exported = json.loads((smoke_sweep / "policies" / TASK / f"seed_{row.seed}" / "best"
                               / "policy.json").read_text())
        assert exported["score"] == pytest.approx(top)
        assert exported["provenance"]["iteration"] == best.iteration


def test_the_experiments_policy_is_the_best_checkpoint_of_the_best_seed(smoke_sweep) -> None:
    record = ExperimentRecord.load(smoke_sweep)
    bests = {row.seed: row.checkpoint(CheckpointKind.BEST).score
             for row in record.trials_of(Phase.CONFIRM)}
    assert len(bests) == 2
    policy = load_policy(smoke_sweep)
    top_seed = max(bests, key=bests.get)
    assert policy.score == pytest.approx(bests[top_seed])
    assert policy.provenance["seed"] == top_seed
    assert policy.provenance["checkpoint_kind"] == "best"
