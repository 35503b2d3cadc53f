"""bench/cluster_sweep.py: the real sweep on a simulated cluster reports consistent figures.

The benchmark's numbers are for bench runs (16 and 32 slots, minutes); here it runs at a
tiny scale on 2 slots and its JSON is checked against the experiment.json it left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "cluster_sweep.py"


def _bench(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def _module():
    spec = importlib.util.spec_from_file_location("cluster_sweep", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_keeps_the_rung_ratios_of_the_paper_budget() -> None:
    from diffcps_ray.tune.suites import load_suite

    suite = load_suite("antmaze")
    paper = suite.budget("paper")
    scaled = _module().scaled_suite(suite, "paper", 100).budget("paper")
    assert scaled.search.iterations * 100 == paper.search.iterations
    assert scaled.confirm.iterations * 100 == paper.confirm.iterations
    assert scaled.grace_period * 100 == paper.grace_period
    assert scaled.reduction_factor == paper.reduction_factor
    assert (scaled.num_samples, scaled.seeds) == (paper.num_samples, paper.seeds)
    assert scaled.search.iterations % scaled.search.eval_interval == 0
    # The suite itself is untouched.
    assert load_suite("antmaze").budget("paper") == paper


def test_a_scale_that_would_change_the_rungs_is_refused(tmp_path: Path) -> None:
    done = _bench("--slots", "2", "--scale", "3", "--keep", str(tmp_path / "kept"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "--scale 3 does not divide the paper budget's grace period (200); ASHA's rung "
        "ratios would change."
    )
    assert not (tmp_path / "kept").exists()


@pytest.mark.slow
def test_two_slot_run_reports_figures_that_match_its_experiment(tmp_path: Path) -> None:
    done = _bench(
        "--slots", "2", "--scale", "200", "--seconds-per-iteration", "0.2",
        "--tasks", "antmaze-umaze-v2", "antmaze-large-play-v2", "--num-samples", "3",
        "--seeds", "1", "--keep", str(tmp_path), "--timeline", str(tmp_path / "timeline.json"),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    manifest = json.loads((Path(figures["experiment"]) / "experiment.json").read_text())
    rows = manifest["trials"]

    assert figures["slots"] == 2
    assert figures["trials"] == len(rows) == 2 * 3 + 2 * 1
    assert figures["trials_seen_running"] == len(rows)
    assert figures["trials_by_phase"] == {"confirm": 2, "search": 6}
    assert figures["errors"] == 0
    assert 0 < figures["utilization"] <= 1
    assert 0 < figures["work_utilization"] <= figures["utilization"]
    assert 1 <= figures["peak_running"] <= 2
    # Every Tune experiment the sweep ran had a trial start after it began.
    assert figures["tune_experiments"] >= 1
    assert len(figures["first_trial_waits_s"]) == figures["tune_experiments"]
    assert all(wait >= 0 for wait in figures["first_trial_waits_s"])
    # The bound is what the docstring says, from the experiment's own rows.
    iterations = sum(r["iterations"] for r in rows)
    assert figures["trial_iterations"] == iterations
    assert figures["work_bound_s"] == pytest.approx(iterations * 0.2 / 2, abs=0.01)
    longest = {
        task: max(r["iterations"] for r in rows if r["task"] == task and r["phase"] == "search")
        + max(r["iterations"] for r in rows if r["task"] == task and r["phase"] == "confirm")
        for task in {r["task"] for r in rows}
    }
    assert figures["longest_chain_iterations"] == max(longest.values())
    assert figures["bound_s"] == max(figures["work_bound_s"], figures["chain_bound_s"])
    assert figures["makespan_over_bound"] >= 1
    # Both figures are printed rounded to 0.01 s; a bound of a few seconds leaves ~1%.
    assert figures["makespan_over_bound"] == pytest.approx(
        figures["makespan_s"] / figures["bound_s"], rel=1e-2
    )
    # Each search trial ran at most the scaled 1000 / 200 iterations; confirmation all 5.
    assert all(r["iterations"] <= 5 for r in rows if r["phase"] == "search")
    assert all(r["iterations"] == 5 for r in rows if r["phase"] == "confirm")
    # The timeline holds each trial's run on a slot, within the makespan.
    timeline = json.loads((tmp_path / "timeline.json").read_text())
    assert len(timeline) == len(rows)
    assert sorted((task, phase) for task, phase, _, _ in timeline) == sorted(
        (r["task"], r["phase"]) for r in rows
    )
    assert all(0 <= start < stop <= figures["makespan_s"] for _, _, start, stop in timeline)
    assert figures["driver_cpu_s"] > 0
