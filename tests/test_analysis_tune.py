"""analysis.aggregate on experiment directories that Ray Tune itself wrote.

Two levels: the production sweep (diffcps_ray.tune.sweep) with the stand-in algorithm of
test_tune_support.py, so Tune writes the trial directories and the tune command writes
experiment.json, in well under a minute of training; and the real command
``python -m diffcps_ray.tune --suite pointmaze --budget smoke`` end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.aggregate import aggregate
from analysis.experiment import RESULT_COLUMNS, load_experiment

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _check_analysis(run_dir: Path, out: Path) -> None:
    """What holds for any finished experiment: every result in the CSV, tables, figures."""
    manifest = json.loads((run_dir / "experiment.json").read_text())
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    expected_rows = sum(
        len((run_dir / t["path"] / "result.json").read_text().splitlines())
        for t in manifest["trials"]
        if (run_dir / t["path"] / "result.json").is_file()
    )
    assert len(results) == expected_rows > 0
    # Tune's own training_iteration and our gradient-step counter made it through.
    assert results["iteration"].min() == 1
    assert (results["num_gradient_steps"] > 0).all()
    table = pd.read_csv(out / "tables" / "results.csv")
    table_runs = pd.read_csv(out / "tables" / "runs.csv")
    confirm = [t for t in manifest["trials"] if t["phase"] == "confirm"]
    for task in {t["task"] for t in confirm}:
        row = table[table["task"] == task].iloc[0]
        assert row["source"] == "confirm"
        assert row["n_seeds"] == sum(
            t["task"] == task and t["status"] == "TERMINATED" for t in confirm
        )
        # The tune command's own last and best scores agree with ours.
        runs = [t for t in confirm if t["task"] == task and t["status"] == "TERMINATED"]
        ours = sorted(table_runs.loc[table_runs["task"] == task, "final_score"])
        assert ours == pytest.approx(sorted(t["score"] for t in runs))
    for figure in ("learning_curves", "sensitivity", "performance_profile"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 10_000, figure
    report = (out / "report.md").read_text()
    assert manifest["command"] in report


def test_aggregate_reads_what_tune_and_the_sweep_wrote(ray_session, tmp_path: Path) -> None:
    from diffcps_ray.tune.sweep import Sweep
    from tests.test_tune_support import StandInTrial, make_data, tiny_options, tiny_suite

    data_root = make_data(tmp_path / "data")
    opts = tiny_options(tmp_path, data_root)
    command = "python -m diffcps_ray.tune --suite pointmaze --budget smoke (stand-in trials)"
    Sweep(tiny_suite(iterations=3), opts, command, resume=False, trainable=StandInTrial).run()
    run_dir = tmp_path / "runs" / "exp"

    analysis = aggregate(run_dir, reps=300)
    _check_analysis(run_dir, run_dir / "analysis")
    manifest = json.loads((run_dir / "experiment.json").read_text())
    recorded = manifest["phases"]["search"]["tasks"]["pointmaze-umaze"]["best"]
    assert analysis.search_best.iloc[0]["trial_id"] == recorded["trial_id"]
    # Every trial is either finished or stopped by ASHA on purpose: no problems.
    assert all(not t.problems for t in load_experiment(run_dir).trials)


@pytest.mark.skipif(
    os.environ.get("DIFFCPS_SKIP_E2E") == "1", reason="DIFFCPS_SKIP_E2E=1 skips end-to-end runs"
)
def test_aggregate_on_the_real_smoke_sweep(smoke_sweep: Path, tmp_path: Path) -> None:
    """The real command's experiment (the session's smoke sweep), then the analysis command,
    as a user runs them.

    The sweep is the tune command's to get right (tests/test_tune*.py); here it only has
    to leave an experiment directory. Where some of its trials failed, the analysis must
    still finish and list them, which is checked instead of the tables.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run_dir = smoke_sweep
    out = tmp_path / "analysis"
    done = subprocess.run(
        [sys.executable, "-m", "analysis.aggregate", str(run_dir), "--out", str(out),
         "--reps", "300"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = (out / "report.md").read_text()
    assert "| budget | smoke |" in report
    manifest = json.loads((run_dir / "experiment.json").read_text())
    failed = [t for t in manifest["trials"] if t["status"] == "ERROR"]
    if not failed:
        _check_analysis(run_dir, out)
        # Real results record the episodes per evaluation (smoke: search 1, confirm 2).
        assert "evaluation episodes per evaluation | confirm: 2; search: 1 |" in report
    else:
        section = report.split("## Missing or failed trials", 1)[1]
        for trial in failed:
            assert trial["trial_id"] in section
