"""bench/schedule_model.py: the discrete-event model of the sweep's order is exact where
the answer is known, and sees what the order cannot avoid."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from diffcps_ray.tune.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "bench" / "schedule_model.py"


def _model():
    if "schedule_model" not in sys.modules:  # its dataclasses look their module up there
        spec = importlib.util.spec_from_file_location("schedule_model", MODEL)
        module = importlib.util.module_from_spec(spec)
        sys.modules["schedule_model"] = module
        spec.loader.exec_module(module)
    return sys.modules["schedule_model"]


@pytest.mark.parametrize("suite", ["antmaze", "pointmaze"])
def test_one_slot_is_never_idle(suite: str) -> None:
    budget = load_suite(suite).budget("paper" if suite == "antmaze" else "demo")
    draw = _model().simulate(budget, tasks=3, slots=1, drift=1.0, rng=random.Random(1))
    assert draw["utilization"] == pytest.approx(1.0)
    assert draw["makespan_over_bound"] == pytest.approx(1.0)


def test_with_a_slot_for_every_trial_the_longest_chain_is_the_makespan() -> None:
    budget = load_suite("antmaze").budget("paper")
    tasks = 6
    slots = tasks * (budget.num_samples + budget.seeds)
    draw = _model().simulate(budget, tasks=tasks, slots=slots, drift=1.0, rng=random.Random(2))
    assert draw["makespan_over_bound"] == pytest.approx(1.0)
    assert draw["last_search_start"] == 0.0


def test_asha_rungs_follow_the_budget() -> None:
    budget = load_suite("antmaze").budget("paper")
    assert _model().rung_milestones(budget) == [200, 600]  # grace 200, reduction 3, max 1000


def test_the_command_prints_one_json_object_per_slot_count() -> None:
    done = subprocess.run(
        [sys.executable, str(MODEL), "--slots", "16", "32", "--draws", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [line["slots"] for line in lines] == [16, 32]
    for line in lines:
        assert 0 < line["utilization"] <= 1
        assert line["makespan_over_bound"] >= 1
        low, high = line["makespan_over_bound_p10_p90"]
        assert low <= line["makespan_over_bound"] <= high
        # ASHA stops most search trials at a rung: the mean is between the first rung
        # (grace 200 of 1000) and the whole search.
        assert 0.2 <= line["mean_search_trial_over_search_length"] < 1
    # Twice the slots for the same work: each slot is busy a smaller share of the time.
    assert lines[1]["utilization"] < lines[0]["utilization"]
