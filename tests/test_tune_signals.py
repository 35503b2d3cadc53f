"""Ctrl-C and SIGTERM stop a real sweep without losing it, and --resume finishes it.

Real signals to a real ``python -m diffcps_ray.tune`` process training the real DiffCPS at
the smoke budget. Each signal is timed from the sweep's own output (a trial of the wanted
phase has started), never from a fixed sleep.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_tune_support import make_data

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
TASK = "pointmaze-umaze"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffcps_ray.tune.suites import load_suite

    transitions = load_suite("pointmaze").budget("smoke").transitions
    return make_data(tmp_path_factory.mktemp("data"), transitions=transitions)


def _tune_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffcps_ray.tune", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1"}


def _interrupt_when(marker: str, sig: int, args: list[str], timeout: float = 600) -> tuple:
    """Run the sweep; send ``sig`` once a line containing ``marker`` is printed."""
    process = subprocess.Popen(_tune_command(*args), cwd=ROOT, env=_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    deadline = time.monotonic() + timeout
    sent = False
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if not sent and marker in line:
            process.send_signal(sig)
            sent = True
        if time.monotonic() > deadline:
            process.kill()
            break
    code = process.wait(timeout=120)
    return code, "".join(lines), sent


def _manifest(storage: Path, name: str) -> dict:
    return json.loads((storage / name / "experiment.json").read_text())


# Where the signal lands: a search trial started, the search's choice made (between the
# phases: the confirmation not yet proposed), a confirmation trial started.
MARKERS = {"search": "[sweep] started search trial",
           "between": f"[search] {TASK}: confirming",
           "confirm": "[sweep] started confirm trial"}


@pytest.mark.parametrize(
    ("sig", "phase"),
    # A SIGINT mid-search, with proposals still to come, is in tests/test_tune_promises.py.
    [(signal.SIGINT, "between"), (signal.SIGINT, "confirm"), (signal.SIGTERM, "search")],
    ids=["sigint-between-phases", "sigint-confirm", "sigterm-search"],
)
def test_a_signal_stops_the_sweep_and_resume_finishes_every_trial(
    tmp_path: Path, data_root: Path, sig: int, phase: str
) -> None:
    storage, name = tmp_path / "runs", "interrupted"
    args = ["--suite", "pointmaze", "--budget", "smoke", "--tasks", TASK,
            "--data-root", str(data_root), "--storage", str(storage), "--name", name]
    code, output, sent = _interrupt_when(MARKERS[phase], sig, args)
    assert sent, output[-3000:]
    assert code == 130, output[-3000:]
    resume = f"python -m diffcps_ray.tune --storage {storage} --name {name} --resume"
    assert f"Continue with: {resume}" in output
    stopped = _manifest(storage, name)
    assert stopped["status"] == "interrupted"
    search_state = stopped["phases"]["search"]["tasks"][TASK]["status"]
    if phase == "search":
        assert search_state != "done"
        assert "confirming" not in output  # no config chosen from cut-off trials
    else:
        assert search_state == "done"
    assert stopped["phases"]["confirm"]["tasks"][TASK]["status"] != "done"
    if phase != "between":  # between the phases, no trial may be running
        assert any(row["status"] == "INTERRUPTED" for row in stopped["trials"])

    done = subprocess.run(_tune_command("--storage", str(storage), "--name", name, "--resume"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    finished = _manifest(storage, name)
    assert finished["status"] == "done"
    budget = finished["phases"]["confirm"]["budget"]["iterations"]
    search = [row for row in finished["trials"] if row["phase"] == "search"]
    confirm = [row for row in finished["trials"] if row["phase"] == "confirm"]
    assert search and all(row["status"] in ("TERMINATED", "STOPPED_EARLY") for row in search)
    assert len(confirm) == len(finished["phases"]["confirm"]["seeds"])
    for row in confirm:
        assert row["status"] == "TERMINATED" and row["iterations"] == budget, row
        assert row["score"] is not None and math.isfinite(row["score"])
    # Every trial's results run 1..N once: nothing redone or lost across the interrupt.
    for row in search + confirm:
        lines = (storage / name / row["path"] / "result.json").read_text().splitlines()
        iterations = [json.loads(line)["training_iteration"] for line in lines]
        assert iterations == list(range(1, row["iterations"] + 1)), (row, iterations)
