"""The sweep on a Ray cluster whose nodes come and go (ray.cluster_utils.Cluster).

Each test drives a real multi-node Ray cluster on this machine in its own process, with
logical GPUs standing in for real ones and the stand-in algorithm of test_tune_support.py
inside the production trainable: what is under test is the sweep's scheduling, retries
and bookkeeping when a node is removed or joins, not the training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

_PREAMBLE = """
import json, os, sys, threading, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from diffcps_ray.tune.ray_start import start_ray
from diffcps_ray.tune.sweep import Sweep
from tests.test_tune_support import (StandInTrial, make_data, tiny_options, tiny_suite,
                                     with_run_options)

tmp = Path(os.environ["TMP_DIR"])
data = make_data(tmp / "data")
experiment = tmp / "runs" / "exp"
lines = []

def log(message):
    lines.append(message)
    print(message, flush=True)

def result_lines(row_path):
    path = experiment / row_path / "result.json"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

def run_in_thread(sweep):
    outcome = {}
    def target():
        try:
            outcome["manifest"] = sweep.run().to_dict()
        except BaseException as error:  # reported by the main thread
            outcome["error"] = repr(error)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome

def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)
"""

_LOST_NODE = _PREAMBLE + """
# 2 CPUs per trial, one more on the head for Ray Data: the two confirmation seeds can
# only run one on each node.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
worker = cluster.add_node(num_cpus=2)
cluster.wait_for_nodes()
try:
    opts = tiny_options(tmp, data, num_samples=1, seeds=2, address=cluster.address,
                        cpus_per_trial=2.0, data_cpus=1.0)
    start_ray(opts.address, opts.data_cpus)
    # Long enough for the second node to start its trial process while the first runs.
    trainable = with_run_options(StandInTrial, sleep=1.5)
    sweep = Sweep(tiny_suite(iterations=16), opts, "test", resume=False, trainable=trainable,
                  log=log)
    thread, outcome = run_in_thread(sweep)

    def both_confirmations_past_two():
        rows = [d for d in experiment.glob("sweep/confirm_*")]
        return len(rows) == 2 and all(
            len(result_lines(f"sweep/{d.name}")) >= 2 for d in rows)

    wait_for(both_confirmations_past_two, 300, "both confirmation trials to run")
    nodes_before = {d.name: result_lines(f"sweep/{d.name}")[-1]["node_id"]
                    for d in experiment.glob("sweep/confirm_*")}
    cluster.remove_node(worker, allow_graceful=False)
    removed = worker.node_id
    thread.join(timeout=400)
    if "manifest" not in outcome:
        raise SystemExit(f"the sweep did not finish: {outcome.get('error')}")
    manifest = outcome["manifest"]
    report = {"removed": removed, "nodes_before": nodes_before, "trials": manifest["trials"],
              "on_disk": json.loads((experiment / "experiment.json").read_text())["trials"],
              "results": {row["trial_id"]: result_lines(row["path"])
                          for row in manifest["trials"]},
              "log": lines}
    print("REPORT " + json.dumps(report))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def _drive(script: str, tmp_path: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMP_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "RAY_AIR_NEW_OUTPUT": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _report(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def test_trials_of_a_removed_node_finish_on_the_other_from_their_checkpoints(tmp_path):
    report = _report(_drive(_LOST_NODE, tmp_path))
    rows = report["trials"]
    assert report["on_disk"] == rows  # experiment.json kept every trial
    assert [row["phase"] for row in rows].count("confirm") == 2
    for row in rows:
        assert row["status"] == "TERMINATED" and row["iterations"] == 16, row
    lost = [trial for trial, node in report["nodes_before"].items()
            if node == report["removed"]]
    assert len(lost) == 1, report["nodes_before"]
    trial_id = lost[0].split("_", 1)[1]
    results = report["results"][trial_id]
    nodes = [line["node_id"] for line in results]
    assert nodes[0] == report["removed"] and nodes[-1] != report["removed"]
    # It went on from a checkpoint: no iteration from 1 again, none lost.
    iterations = [line["training_iteration"] for line in results]
    assert iterations[-1] == 16 and iterations[0] == 1
    restarted = [line for line in results if line["node_id"] != report["removed"]]
    assert restarted[0]["training_iteration"] > 1
    assert restarted[0]["iterations_since_restore"] == 1
    assert any("failed and restarts from its last checkpoint" in line
               for line in report["log"]), report["log"]


_GPUS_JOIN_LATER = _PREAMBLE + """
# The cluster starts without GPUs, as an autoscaled one does; a GPU node joins later.
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
cluster.wait_for_nodes()
try:
    opts = tiny_options(tmp, data, num_samples=1, seeds=1, address=cluster.address,
                        gpus_per_trial=1.0, data_cpus=1.0)
    start_ray(opts.address, opts.data_cpus)
    sweep = Sweep(tiny_suite(iterations=2), opts, "test", resume=False, trainable=StandInTrial,
                  log=log)
    thread, outcome = run_in_thread(sweep)
    wait_for(lambda: any("waiting for GPUs" in line for line in lines), 120, "the wait line")
    time.sleep(3)
    started_before_gpus = list(experiment.glob("sweep/*/result.json"))
    cluster.add_node(num_cpus=1, num_gpus=1)
    thread.join(timeout=300)
    if "manifest" not in outcome:
        raise SystemExit(f"the sweep did not finish: {outcome.get('error')}")
    print("REPORT " + json.dumps({"log": lines, "trials": outcome["manifest"]["trials"],
                                  "started_before_gpus": len(started_before_gpus)}))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def test_a_sweep_waits_for_gpus_that_join_after_it_started(tmp_path):
    report = _report(_drive(_GPUS_JOIN_LATER, tmp_path))
    waiting = next(line for line in report["log"] if "waiting for GPUs" in line)
    assert "the Ray cluster has 0 and a trial needs 1" in waiting
    assert report["started_before_gpus"] == 0  # nothing ran without its GPU
    assert any("GPU(s) available now" in line for line in report["log"])
    assert len(report["trials"]) == 2
    assert all(row["status"] == "TERMINATED" for row in report["trials"])
