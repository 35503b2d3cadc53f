"""The sweep's plan (tune/plan.py): what runs next, per-task ASHA, endings, saved state."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from diffcps_ray.tune.plan import FINISHED, AshaRungs, SearchSpec, SweepPlan, TaskPlan
from diffcps_ray.tune.record import TrialStatus
from diffcps_ray.tune.suites import METRIC


class _Driver:
    """The driver side of a sweep plan (tune/sweep.py's Sweep in production)."""

    def __init__(self) -> None:
        self.proposed: list[tuple[str, int]] = []
        self.told: list[tuple[str, int, TrialStatus, float | None]] = []
        self.chosen: list[str] = []
        self.done: list[str] = []
        self.limit = 8

    def trial_limit(self) -> int:
        return self.limit

    def propose_search(self, task: str, index: int) -> tuple[dict[str, float], int]:
        self.proposed.append((task, index))
        return {"kappa": 0.01 * (index + 1)}, index

    def tell_search(self, task: str, study_trial: int, status: TrialStatus,
                    score: float | None) -> None:
        self.told.append((task, study_trial, status, score))

    def search_done(self, task: str, trials: list) -> list[dict]:
        self.chosen.append(task)
        return [{"phase": "confirm", "task": task, "seed": 1}]

    def task_done(self, task: str, trials: list) -> None:
        self.done.append(task)


def _two_task_plan(samples: int = 2) -> SweepPlan:
    def spec(task: str) -> SearchSpec:
        return SearchSpec({"kappa": (0.01, 0.1)}, {"phase": "search", "task": task,
                          "run": {"iterations": 4}}, samples, grace_period=1,
                          reduction_factor=2)

    return SweepPlan([TaskPlan(t, spec(t), expected_points=1) for t in ("a", "b")],
                     search_iterations=4, run_iterations=6)


def test_the_plan_interleaves_tasks_and_confirms_a_task_as_soon_as_its_search_ends() -> None:
    driver, plan = _Driver(), _two_task_plan()
    plan.attach(driver)
    proposed = [plan.suggest(f"t{i}") for i in range(4)]
    assert [c["task"] for c in proposed] == ["a", "b", "a", "b"]  # round-robin
    assert driver.proposed == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    assert plan.total_trials == 6
    for trial_id in ("t0", "t2"):  # task a's search ends; b still searches
        plan.on_complete(trial_id, {METRIC: 50.0, "training_iteration": 4}, error=False)
    assert driver.chosen == ["a"]
    confirm = plan.suggest("t4")
    assert confirm == {"phase": "confirm", "task": "a", "seed": 1}
    assert plan.target_iterations("t4") == 6 and plan.target_iterations("t0") == 4
    assert plan.suggest("t5") is None  # nothing left to propose until b finishes
    plan.on_complete("t4", {METRIC: 60.0, "training_iteration": 6}, error=False)
    assert driver.done == ["a"] and not plan.finished()


def test_a_trial_stopped_by_an_interrupt_is_not_finished_but_one_asha_stopped_is() -> None:
    driver, plan = _Driver(), _two_task_plan(samples=3)
    plan.attach(driver)
    for i in range(6):
        plan.suggest(f"t{i}")
    # Task a: two trials reach the first rung (1 iteration) with good scores ...
    for trial_id, score in (("t0", 70.0), ("t2", 80.0)):
        assert not plan.on_result(trial_id, {METRIC: score, "training_iteration": 1})
    # ... and the third scores below the rung's cutoff: ASHA stops it.
    low = {METRIC: 10.0, "training_iteration": 1}
    assert plan.on_result("t4", low)
    plan.on_complete("t4", low, error=False)
    assert plan.trials["t4"].status == TrialStatus.STOPPED_EARLY
    # A trial that Ctrl-C stopped at iteration 2 of 4 stays unfinished.
    plan.on_complete("t0", {METRIC: 85.0, "training_iteration": 2}, error=False)
    assert not plan.trials["t0"].finished
    plan.on_complete("t2", {METRIC: 75.0, "training_iteration": 4}, error=False)
    assert driver.chosen == []  # no choice while t0 is unfinished
    plan.on_complete("t0", {METRIC: 90.0, "training_iteration": 4}, error=False)
    assert driver.chosen == ["a"]
    assert sorted(t[2] for t in driver.told if t[0] == "a") == [
        TrialStatus.STOPPED_EARLY, TrialStatus.TERMINATED, TrialStatus.TERMINATED]


def test_nothing_left_to_propose_is_finished() -> None:
    driver, plan = _Driver(), SweepPlan([TaskPlan("a", None, points=[{"phase": "ablation",
                                                                      "task": "a"}])], 1, 1)
    plan.attach(driver)
    assert plan.suggest("t0") == {"phase": "ablation", "task": "a"}
    assert plan.suggest("t1") == FINISHED


def test_the_saved_state_is_plain_json_and_restores_the_same_plan() -> None:
    driver, plan = _Driver(), _two_task_plan(samples=3)
    plan.attach(driver)
    for i in range(5):
        plan.suggest(f"t{i}")
    plan.on_result("t0", {METRIC: 70.0, "training_iteration": 1})
    plan.on_complete("t1", {METRIC: 20.0, "training_iteration": 4}, error=True)
    text = json.dumps(plan.to_state())  # no Tune or Optuna objects: plain data
    restored = SweepPlan.from_state(json.loads(text))
    assert restored.to_state() == plan.to_state()
    assert restored.trials["t1"].status == TrialStatus.ERROR
    assert restored.tasks["a"].rungs.recorded == {"1": {"t0": 70.0}}


@pytest.mark.parametrize(("grace_period", "reduction_factor", "max_t"),
                         [(1, 2, 8), (2, 3, 20), (200, 2, 1000)])
def test_the_plans_asha_decides_as_tunes_asha(grace_period: int, reduction_factor: int,
                                              max_t: int) -> None:
    """Random results at random iterations: every stop/continue is Tune's own decision."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    tune_asha = ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode="max",
                              max_t=max_t, grace_period=grace_period,
                              reduction_factor=reduction_factor)
    ours = AshaRungs(grace_period, reduction_factor, max_t)
    draw = random.Random(grace_period * 31 + max_t)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(12)]
    for trial in trials:
        tune_asha.on_trial_add(None, trial)
    for _ in range(200):
        trial = draw.choice(trials)
        iteration = draw.randint(1, max_t - 1)
        score = draw.uniform(0, 100)
        tune_stops = tune_asha.on_trial_result(
            None, trial, {"training_iteration": iteration, METRIC: score}) == TrialScheduler.STOP
        assert ours.should_stop(trial.trial_id, iteration, score) == tune_stops
