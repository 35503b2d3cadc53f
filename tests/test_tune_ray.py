"""The sweep under Ray Tune: tasks at once, manifest, worker death, NaN, resume, Ray Data CPUs.

The trials run the stand-in algorithm of test_tune_support.py inside the production
trainable (a few iterations each), so these tests check the Tune plumbing in seconds;
test_tune_e2e.py runs the real DiffCPS through the command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diffcps_ray.tune.ray_start import concurrency
from diffcps_ray.tune.sweep import Sweep
from tests.test_tune_support import (
    SECOND_TASK,
    StandInTrial,
    make_data,
    tiny_options,
    tiny_suite,
    two_task_suite,
    with_run_options,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("data"))


class _Timeout:
    """Fail instead of hanging (a deadlock would otherwise stall the whole test run)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def fire(*_: object) -> None:
            raise TimeoutError(f"the sweep did not finish within {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def _result_lines(experiment: Path, row: dict) -> list[dict]:
    path = experiment / row["path"] / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_sweep_runs_both_phases_and_writes_the_manifest(ray_session, tmp_path, data_root):
    opts = tiny_options(tmp_path, data_root)
    sweep = Sweep(tiny_suite(), opts, "test", resume=False, trainable=StandInTrial)
    # 4 logical CPUs, 2 kept for Ray Data: two trials at a time.
    assert concurrency(opts.resources) == 2
    with _Timeout(240):
        manifest = sweep.run().to_dict()
    experiment = tmp_path / "runs" / "exp"
    on_disk = json.loads((experiment / "experiment.json").read_text())
    assert on_disk["trials"] == json.loads(json.dumps(manifest["trials"]))
    assert on_disk["phases"]["search"]["tasks"]["pointmaze-umaze"]["status"] == "done"
    assert on_disk["phases"]["confirm"]["status"] == "done"

    search = [t for t in manifest["trials"] if t["phase"] == "search"]
    confirm = [t for t in manifest["trials"] if t["phase"] == "confirm"]
    assert len(search) == 3 and len(confirm) == 2
    # The paper's point (kappa 0.05, lambda_clip 0 run as the floor) is evaluated.
    assert any(t["kappa"] == pytest.approx(0.05) and t["lambda_clip"] == 0.0 for t in search)
    best = on_disk["phases"]["search"]["tasks"]["pointmaze-umaze"]["best"]
    assert {t["kappa"] for t in confirm} == {best["kappa"]}
    assert sorted(t["seed"] for t in confirm) == [1, 2]
    for row in search + confirm:
        trial_dir = experiment / row["path"]
        assert trial_dir.name == f"{row['phase']}_{row['trial_id']}"  # short names
        assert (trial_dir / "params.json").is_file()
        params = json.loads((trial_dir / "params.json").read_text())
        assert params["task"] == "pointmaze-umaze" and params["seed"] == row["seed"]
        lines = _result_lines(experiment, row)
        assert lines[-1]["training_iteration"] == row["iterations"]  # ours, not the inner one
        assert "normalized_score" in lines[-1]["evaluation"]


def test_a_killed_worker_resumes_from_its_checkpoint(ray_session, tmp_path, data_root):
    marker = tmp_path / "killed"
    trainable = with_run_options(
        StandInTrial, kill_once_at={"iteration": 3, "marker": str(marker)}
    )
    opts = tiny_options(tmp_path, data_root, num_samples=1, seeds=1)
    suite = tiny_suite(iterations=4, steps=10)
    with _Timeout(240):
        manifest = Sweep(suite, opts, "test", resume=False, trainable=trainable).run().to_dict()
    assert marker.exists(), "the worker was never killed"
    experiment = tmp_path / "runs" / "exp"
    killed = next(t for t in manifest["trials"] if t["phase"] == "search")
    assert killed["status"] == "TERMINATED" and killed["iterations"] == 4
    lines = _result_lines(experiment, killed)
    # Iterations 1-2 checkpointed; 3 died unreported, was redone from the checkpoint.
    assert [line["training_iteration"] for line in lines] == [1, 2, 3, 4]
    assert lines[-1]["num_gradient_steps"] == 40  # no steps lost or counted twice
    assert lines[2]["iterations_since_restore"] == 1  # iteration 3 ran after a restore


def test_a_nan_trial_errors_naming_the_metric_and_the_sweep_goes_on(
    ray_session, tmp_path, data_root
):
    # The paper's kappa (0.05, tried first) diverges; the others train.
    trainable = with_run_options(StandInTrial, nan_when_kappa=0.05)
    opts = tiny_options(tmp_path, data_root, num_samples=3, seeds=1)
    console: list[str] = []
    with _Timeout(240):
        manifest = Sweep(tiny_suite(), opts, "test", resume=False, trainable=trainable,
                         log=console.append).run().to_dict()
    search = [t for t in manifest["trials"] if t["phase"] == "search"]
    failed = [t for t in search if t["status"] == "ERROR"]
    # The failure reaches the console as one line naming the metric and the log file.
    lines = [line for line in console if " failed: " in line]
    assert lines and all("\n" not in line for line in lines)
    assert "critic_loss became nan" in lines[0] and "(log: " in lines[0]
    log_path = lines[0].rsplit("(log: ", 1)[1].rstrip(")")
    assert Path(log_path).is_file()
    assert failed and any(t["kappa"] == pytest.approx(0.05) for t in failed)
    for row in failed:
        assert "learners/default_policy/critic_loss became nan" in row["error"]
    assert any(t["status"] == "TERMINATED" for t in search)
    confirm = [t for t in manifest["trials"] if t["phase"] == "confirm"]
    assert confirm and all(t["kappa"] != pytest.approx(0.05) for t in confirm)
    assert all(t["status"] == "TERMINATED" for t in confirm)


def _load_studies(experiment: Path, manifest: dict) -> dict[str, object]:
    """Each task's Optuna study, opened from what experiment.json records."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    studies = {}
    for task, entry in manifest["phases"]["search"]["tasks"].items():
        journal = experiment / entry["optuna_storage"]
        storage = JournalStorage(JournalFileBackend(str(journal)))
        studies[task] = optuna.load_study(study_name=entry["study_name"], storage=storage)
    return studies


def test_every_task_searches_at_once_each_with_its_own_study(ray_session, tmp_path, data_root):
    opts = tiny_options(tmp_path, data_root, num_samples=3, seeds=1,
                        tasks=["pointmaze-umaze", SECOND_TASK])
    trainable = with_run_options(StandInTrial, sleep=0.3)
    with _Timeout(300):
        manifest = Sweep(two_task_suite(iterations=2), opts, "test", resume=False,
                         trainable=trainable).run().to_dict()
    experiment = tmp_path / "runs" / "exp"
    spans = {}
    for task in ("pointmaze-umaze", SECOND_TASK):
        rows = [t for t in manifest["trials"] if t["task"] == task and t["phase"] == "search"]
        assert len(rows) == 3
        times = [line["timestamp"] for row in rows for line in _result_lines(experiment, row)]
        spans[task] = (min(times), max(times))
    (first_start, first_end), (second_start, second_end) = spans.values()
    assert first_start <= second_end and second_start <= first_end  # the searches overlap
    studies = _load_studies(experiment, manifest)
    for task, study in studies.items():
        assert len(study.trials) == 3
        assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
        searched = {(t["kappa"]) for t in manifest["trials"]
                    if t["task"] == task and t["phase"] == "search"}
        assert {t.params["kappa"] for t in study.trials} == searched
    assert all(t["status"] == "TERMINATED" for t in manifest["trials"] if t["phase"] == "confirm")


_INTERRUPTED_DRIVER = """
import os, ray
from ray.tune import Callback
from diffcps_ray.tune.sweep import Sweep
from tests.test_tune_support import (SECOND_TASK, StandInTrial, tiny_options, two_task_suite,
                                     with_run_options)
from pathlib import Path

class DieMidway(Callback):
    # Kills the driver (no clean shutdown) at the fourth trial's first result: some
    # trials finished, some running, some not yet proposed by Optuna.
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if os.environ.get("DIE_MIDWAY") and len(trials) >= 4 and trial is trials[3]:
            os._exit(17)

tmp, data = Path(os.environ["TMP_DIR"]), Path(os.environ["DATA_DIR"])
opts = tiny_options(tmp, data, num_samples=3, seeds=1, max_concurrent=1,
                    address=os.environ["ADDR"], tasks=["pointmaze-umaze", SECOND_TASK])
ray.init(address=opts.address, log_to_driver=False)
trainable = with_run_options(StandInTrial, sleep=0.3)
Sweep(two_task_suite(iterations=2), opts, "test", resume=False, trainable=trainable,
      callbacks=[DieMidway()]).run()
"""


def test_resume_continues_an_interrupted_two_task_sweep_with_both_studies(
    ray_session, tmp_path, data_root
):
    address = ray_session.get_runtime_context().gcs_address
    env = {**os.environ, "TMP_DIR": str(tmp_path), "DATA_DIR": str(data_root), "ADDR": address,
           "DIE_MIDWAY": "1", "PYTHONPATH": str(ROOT), "RAY_AIR_NEW_OUTPUT": "0",
           # Snapshot the experiment every loop step, so the crash loses no finished trial.
           "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_INTERRUPTED_DRIVER)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    experiment = tmp_path / "runs" / "exp"
    before = json.loads((experiment / "experiment.json").read_text())
    assert before["status"] == "running"
    assert any(entry["status"] != "done"
               for entry in before["phases"]["search"]["tasks"].values())

    opts = tiny_options(tmp_path, data_root, num_samples=3, seeds=1, max_concurrent=1,
                        tasks=["pointmaze-umaze", SECOND_TASK])
    trainable = with_run_options(StandInTrial, sleep=0.3)
    with _Timeout(300):
        manifest = Sweep(two_task_suite(iterations=2), opts, "test", resume=True,
                         trainable=trainable).run().to_dict()
    assert manifest["status"] == "done"
    studies = _load_studies(experiment, manifest)
    for task, study in studies.items():
        search = [t for t in manifest["trials"] if t["task"] == task and t["phase"] == "search"]
        assert len(search) == 3, search  # num_samples honoured across the crash
        assert len({(t["kappa"], t["lambda_clip"]) for t in search}) == 3
        assert sum(t["kappa"] == pytest.approx(0.05) and t["lambda_clip"] == 0.0
                   for t in search) == 1  # the paper's point was not proposed twice
        assert all(t["status"] in ("TERMINATED", "STOPPED_EARLY") for t in search), search
        # The study holds every trial, each told its ending once.
        assert len(study.trials) == 3
        assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
        confirm = [t for t in manifest["trials"] if t["task"] == task and t["phase"] == "confirm"]
        assert len(confirm) == 1 and confirm[0]["status"] == "TERMINATED"
    first = next(t for t in manifest["trials"] if t["kappa"] == pytest.approx(0.05))
    lines = _result_lines(experiment, first)  # finished before the crash, not re-run
    assert [line["training_iteration"] for line in lines] == [1, 2]


_CLUSTER_DRIVER = """
import json, os, sys
from pathlib import Path
from ray.cluster_utils import Cluster
from diffcps_ray.tune.ray_start import start_ray
from diffcps_ray.tune.sweep import Sweep
from tests.test_tune_support import (StandInTrial, make_data, tiny_options, tiny_suite,
                                     with_run_options)

tmp = Path(os.environ["TMP_DIR"])
data = make_data(tmp / "data")
# 3 CPUs per node and 2 per trial: two trials at a time can only run on different nodes.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
cluster.add_node(num_cpus=3)
cluster.wait_for_nodes()
try:
    opts = tiny_options(tmp, data, num_samples=2, seeds=2, address=cluster.address,
                        cpus_per_trial=2.0, data_cpus=1.0)
    start_ray(opts.address, opts.data_cpus)
    trainable = with_run_options(StandInTrial, sleep=1.0, read_data=True)
    manifest = Sweep(tiny_suite(iterations=2), opts, "test", resume=False,
                     trainable=trainable).run().to_dict()
    experiment = tmp / "runs" / "exp"
    nodes = {}
    for row in manifest["trials"]:
        lines = (experiment / row["path"] / "result.json").read_text().splitlines()
        nodes[row["trial_id"]] = json.loads(lines[-1])["node_id"]
    print(json.dumps({"nodes": nodes, "statuses": [r["status"] for r in manifest["trials"]]}))
finally:
    import ray
    ray.shutdown()
    cluster.shutdown()
"""


def test_trials_run_on_both_nodes_of_a_two_node_cluster(tmp_path):
    env = {**os.environ, "TMP_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "RAY_AIR_NEW_OUTPUT": "0"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CLUSTER_DRIVER)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(next(line for line in done.stdout.splitlines()
                             if line.startswith('{"nodes"')))
    assert set(report["statuses"]) == {"TERMINATED"} or set(report["statuses"]) <= {
        "TERMINATED", "STOPPED_EARLY"}
    assert len(set(report["nodes"].values())) == 2, report


def test_trials_filling_the_cpus_leave_room_for_ray_data(ray_session, tmp_path, data_root):
    """Every trial reads its shards with Ray Data at start-up while others train.

    With 4 logical CPUs and 1 CPU per trial, letting 4 trials start would leave no CPU
    for Ray Data's read tasks (which run outside the trials' placement groups) and hang.
    The sweep keeps --data-cpus free, so this finishes.
    """
    opts = tiny_options(tmp_path, data_root, num_samples=2, seeds=2)
    assert concurrency(opts.resources) == 2
    trainable = with_run_options(StandInTrial, sleep=0.5, read_data=True)
    with _Timeout(240):
        manifest = Sweep(tiny_suite(iterations=2), opts, "test", resume=False,
                         trainable=trainable).run().to_dict()
    assert len(manifest["trials"]) == 4
    assert all(t["status"] != "ERROR" for t in manifest["trials"])


def test_an_ablation_grid_runs_every_value_with_the_paper_config(
    ray_session, tmp_path, data_root
):
    import dataclasses

    from diffcps_ray.tune.suites import load_suite

    ablation = load_suite("ablation-T", base_override="pointmaze")
    ablation = dataclasses.replace(ablation, budgets=tiny_suite().budgets)
    opts = tiny_options(tmp_path, data_root, suite="ablation-T", base="pointmaze", seeds=1)
    with _Timeout(240):
        sweep = Sweep(ablation, opts, "test", resume=False, trainable=StandInTrial)
        manifest = sweep.run().to_dict()
    rows = manifest["trials"]
    assert {t["phase"] for t in rows} == {"ablation"}
    assert sorted(t["variant"]["T"] for t in rows) == [5, 15, 20]
    assert all(t["kappa"] == 0.05 and t["lambda_clip"] == 0.0 for t in rows)
    for row in rows:
        params = json.loads((tmp_path / "runs" / "exp" / row["path"] / "params.json").read_text())
        assert params["settings"]["T"] == row["variant"]["T"]
