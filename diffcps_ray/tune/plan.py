"""What runs next in a sweep: every task's search and confirmation in one Tune experiment.

Why one Tuner for the whole sweep, with a per-task searcher and per-task ASHA inside it:
- one concurrency limit covers every task, so a cluster's slots are filled by whichever
  task has work, and a 2-slot machine still makes progress on every task (search
  proposals are handed out round-robin over the tasks);
- a task's confirmation seeds are proposed the moment its search has chosen a config, while
  other tasks are still searching (confirmations go first: they are the critical path);
- scores of different tasks are never compared: each task has its own Optuna study
  (studies.py) and its own ASHA rungs;
- one experiment directory, one ``Tuner.restore`` and one searcher state make ``--resume``
  continue from any point, mid-search or mid-confirmation, with nothing to reconcile
  between phases.
One driver per task on a shared cluster would also interleave tasks, but with as many
concurrency limits, restores and processes as tasks, and no one place to put the
critical path first.

How close this order comes to the best possible makespan is modelled in
bench/schedule_model.py and discussed in docs/performance.md: on many slots, what limits a
sweep is a task's last search trials, which start late (every task's trials must pass
ASHA's first rung first) and, when ASHA promotes them, delay that task's confirmation.
The model's other orders (``--order search-first``, ``task-by-task``) do no better.

The plan is shared by ``SweepSearcher`` (what to start) and ``SweepScheduler`` (ASHA per
task) and pickled with the searcher state at every Tune snapshot. Live objects (Optuna
studies, the manifest, the log) belong to the driver and are reached through the active
``SweepContext``, so a restored plan works in a new process.

A trial counts as finished only for a reason the sweep knows: it ran its iterations, ASHA
stopped it, or it failed for good. A trial stopped any other way (Ctrl-C, SIGTERM, a lost
driver) is unfinished: it is resumed from its checkpoint, and no config is chosen from it.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from diffcps_ray.results import finite_number, metric_value
from diffcps_ray.tune.suites import METRIC

MODE = "max"
SWEEP_DIR = "sweep"  # the Tune experiment directory inside the experiment
RUNNING, TERMINATED, STOPPED_EARLY, ERROR = "RUNNING", "TERMINATED", "STOPPED_EARLY", "ERROR"
FINISHED_STATUSES = (TERMINATED, STOPPED_EARLY, ERROR)
# The last-result keys a trial's manifest row and the selection need.
KEPT_RESULT_KEYS = (
    METRIC, "evaluation/best_normalized_score", "evaluation/normalized_score_std",
    "evaluation/num_episodes", "training_iteration", "num_gradient_steps",
)


class SweepContext(Protocol):
    """The driver's side of a running sweep (tune/sweep.py's Sweep implements it)."""

    def log(self, message: str) -> None: ...

    plan: SweepPlan | None  # the plan Tune runs (a restored searcher attaches its own)

    def attach(self, plan: SweepPlan) -> None: ...

    def trial_limit(self) -> int:
        """How many trials may be live at once now (the cluster may grow)."""

    def trial_resources(self) -> dict[str, float]:
        """The resources a trial asks for now (``--resume`` may change them)."""

    def study(self, task: str) -> Any:
        """The task's Optuna study, opened once per process."""

    def search_done(self, task: str, trials: list[TrialRecord]) -> list[dict[str, Any]]:
        """Record the task's search and choose its config; returns its confirmation configs."""

    def task_done(self, task: str, trials: list[TrialRecord]) -> None:
        """Every confirmation (or ablation) trial of the task has finished."""


_active: SweepContext | None = None


@contextmanager
def active(context: SweepContext) -> Iterator[None]:
    """Make ``context`` the one the plan talks to while a Tuner runs in this process."""
    global _active
    previous, _active = _active, context
    try:
        yield
    finally:
        _active = previous


def _context() -> SweepContext:
    if _active is None:
        raise RuntimeError("The sweep plan ran outside tune.plan.active(...).")
    return _active


def _plan() -> SweepPlan:
    """The plan of the running sweep.

    Tune pickles the searcher, the scheduler and the stopper separately, so after a
    restore they would not share one plan object; the scheduler and the stopper use the
    one the searcher restored and attached.
    """
    plan = _context().plan
    if plan is None:
        raise RuntimeError("No sweep plan is attached to the running sweep.")
    return plan


@dataclass
class TrialRecord:
    """One trial as the plan sees it: what it runs, how far it got, how it ended."""

    trial_id: str
    task: str
    phase: str  # "search" | "confirm" | "ablation"
    config: dict[str, Any]
    iterations: int  # the trial's budget
    study_trial: int | None = None  # the Optuna trial number (search only)
    status: str = RUNNING
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The trial directory, relative to the experiment directory."""
        return f"{SWEEP_DIR}/{self.phase}_{self.trial_id}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def score(self) -> float | None:
        return finite_number(metric_value(self.result, METRIC))

    @property
    def iterations_done(self) -> int:
        return int(self.result.get("training_iteration", 0) or 0)


@dataclass
class SearchSpec:
    """A task's search: the space, the trial's fixed part, its sample count and ASHA."""

    distributions: dict[str, tuple[float, float]]  # name -> (low, high), log-uniform
    base_config: dict[str, Any]  # phase, task, seed, settings, run
    num_samples: int
    grace_period: int
    reduction_factor: int


@dataclass
class TaskPlan:
    """One task's progress: its search proposals, then its confirmation (or grid) points."""

    name: str
    search: SearchSpec | None
    points: list[dict[str, Any]] | None = None  # known once the search has chosen
    expected_points: int = 0  # how many points a finished search will hand over
    proposed_search: int = 0
    proposed_points: int = 0
    search_done: bool = False
    done: bool = False
    scheduler: ASHAScheduler | None = None

    def __post_init__(self) -> None:
        if self.search is None:
            self.search_done = True
        elif self.scheduler is None:
            self.scheduler = ASHAScheduler(
                time_attr="training_iteration", metric=METRIC, mode=MODE,
                max_t=int(self.search.base_config["run"]["iterations"]),
                grace_period=self.search.grace_period,
                reduction_factor=self.search.reduction_factor,
            )

    @property
    def search_left(self) -> int:
        return 0 if self.search is None else self.search.num_samples - self.proposed_search

    @property
    def points_left(self) -> int:
        return 0 if self.points is None else len(self.points) - self.proposed_points


class SweepPlan:
    """Proposes trials for every task and keeps per-task ASHA; see the module docstring."""

    def __init__(self, tasks: list[TaskPlan], search_iterations: int, run_iterations: int):
        self.tasks = {task.name: task for task in tasks}
        self.search_iterations = search_iterations
        self.run_iterations = run_iterations
        self.trials: dict[str, TrialRecord] = {}
        self.asha_stopped: set[str] = set()

    # -- what to start -------------------------------------------------------------------

    @property
    def total_trials(self) -> int:
        """An upper bound on the trials this plan proposes (Tune's num_samples)."""
        total = 0
        for task in self.tasks.values():
            total += task.search.num_samples if task.search else 0
            total += len(task.points) if task.points is not None else task.expected_points
        return total

    def live(self) -> int:
        return sum(not record.finished for record in self.trials.values())

    def proposals_left(self) -> bool:
        return any(not task.search_done or task.points_left for task in self.tasks.values())

    def finished(self) -> bool:
        return all(task.done for task in self.tasks.values())

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.proposals_left():
            return Searcher.FINISHED
        if self.live() >= max(1, _context().trial_limit()):
            return None
        # Confirmation (and grid) points first: each is a whole run on the critical path.
        for task in self.tasks.values():
            if task.points_left:
                config = copy.deepcopy(task.points[task.proposed_points])
                task.proposed_points += 1
                self._register(trial_id, task.name, config, self.run_iterations)
                return config
        # Then search proposals, round-robin: the task with the fewest proposals so far.
        searching = [t for t in self.tasks.values() if t.search_left > 0]
        if not searching:
            return None  # waiting for a search to finish
        task = min(searching, key=lambda t: t.proposed_search)
        spec = task.search
        study = _context().study(task.name)
        import optuna

        distributions = {
            name: optuna.distributions.FloatDistribution(low, high, log=True)
            for name, (low, high) in spec.distributions.items()
        }
        study_trial = study.ask(fixed_distributions=distributions)
        config = {**copy.deepcopy(spec.base_config), **study_trial.params}
        task.proposed_search += 1
        record = self._register(trial_id, task.name, config, self.search_iterations)
        record.study_trial = study_trial.number
        return config

    def _register(self, trial_id: str, task: str, config: dict[str, Any],
                  iterations: int) -> TrialRecord:
        record = TrialRecord(trial_id, task, config["phase"], config, iterations)
        self.trials[trial_id] = record
        return record

    # -- results and endings -------------------------------------------------------------

    def on_result(self, trial: Any, result: dict[str, Any]) -> str:
        record = self.trials.get(trial.trial_id)
        if record is None:
            return TrialScheduler.CONTINUE
        record.result = {k: result[k] for k in KEPT_RESULT_KEYS if k in result}
        task = self.tasks[record.task]
        if record.phase != "search" or task.scheduler is None:
            return TrialScheduler.CONTINUE
        if not finite_number(result.get(METRIC)):
            return TrialScheduler.CONTINUE  # no evaluation yet: nothing to compare
        decision = task.scheduler.on_trial_result(None, trial, result)
        if decision == TrialScheduler.STOP and record.iterations_done < record.iterations:
            self.asha_stopped.add(trial.trial_id)
        return decision

    def on_complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        record = self.trials.get(trial_id)
        if record is None or record.finished:
            return
        if result:
            record.result = {k: result[k] for k in KEPT_RESULT_KEYS if k in result}
        if error:
            record.status = ERROR
        elif record.iterations_done >= record.iterations:
            record.status = TERMINATED
        elif trial_id in self.asha_stopped:
            record.status = STOPPED_EARLY
        else:
            return  # stopped by an interrupt: it resumes, and counts for nothing yet
        task = self.tasks[record.task]
        if record.phase == "search":
            self._tell_study(record)
            self._maybe_finish_search(task)
        else:
            self._maybe_finish_task(task)

    def _tell_study(self, record: TrialRecord) -> None:
        import optuna

        study = _context().study(record.task)
        score = record.score
        if record.status == ERROR:
            state, value = optuna.trial.TrialState.FAIL, None
        elif score is None:
            state, value = optuna.trial.TrialState.PRUNED, None
        else:
            state, value = optuna.trial.TrialState.COMPLETE, score
        study.tell(record.study_trial, value, state=state, skip_if_finished=True)

    def _maybe_finish_search(self, task: TaskPlan) -> None:
        if task.search_done or task.search_left > 0:
            return
        records = self.task_trials(task.name, "search")
        if not all(record.finished for record in records):
            return
        task.search_done = True
        task.points = list(_context().search_done(task.name, records))
        self._maybe_finish_task(task)

    def _maybe_finish_task(self, task: TaskPlan) -> None:
        if task.done or not task.search_done or task.points_left:
            return
        records = [r for r in self.trials.values() if r.task == task.name and r.phase != "search"]
        if all(record.finished for record in records):
            task.done = True
            _context().task_done(task.name, records)

    def restart_finished_checks(self) -> None:
        """After a restore: finish what the saved state left one step short, if anything."""
        for task in self.tasks.values():
            self._maybe_finish_search(task)
            self._maybe_finish_task(task)

    def task_trials(self, task: str, phase: str | None = None) -> list[TrialRecord]:
        return [r for r in self.trials.values()
                if r.task == task and (phase is None or r.phase == phase)]

    def target_iterations(self, trial_id: str) -> int | None:
        record = self.trials.get(trial_id)
        return None if record is None else record.iterations

    # -- state ---------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "trials": self.trials, "asha_stopped": self.asha_stopped,
                "search_iterations": self.search_iterations,
                "run_iterations": self.run_iterations}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _nonzero(resources: dict[str, float]) -> dict[str, float]:
    return {key.upper(): float(value) for key, value in resources.items() if value}


class SweepSearcher(Searcher):
    """Tune's view of the plan: proposals, completions, and the state Tune snapshots."""

    def __init__(self, plan: SweepPlan) -> None:
        super().__init__(metric=METRIC, mode=MODE)
        self.plan = plan

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if _context().plan is None:  # restored without a searcher snapshot
            _context().attach(self.plan)
        return self.plan.suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self.plan.on_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.plan.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.plan.set_state(pickle.load(f))
        _context().attach(self.plan)


class SweepScheduler(FIFOScheduler):
    """Per-task ASHA for search trials; confirmation trials always continue.

    Trials start in the order the searcher proposed them (FIFO). A restored trial that
    has not started yet takes the resources the resumed sweep asks for.
    """

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        plan = _plan()
        record = plan.trials.get(trial.trial_id)
        if record is not None and record.phase == "search":
            scheduler = plan.tasks[record.task].scheduler
            if scheduler is not None:
                scheduler.on_trial_add(tune_controller, trial)
        if trial.status in ("PENDING", "PAUSED"):
            resources = _context().trial_resources()
            if _nonzero(trial.placement_group_factory.required_resources) != _nonzero(resources):
                trial.update_resources(resources)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return _plan().on_result(trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._forget(trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._forget(trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._forget(trial)

    def _forget(self, trial: Any) -> None:
        plan = _plan()
        record = plan.trials.get(trial.trial_id)
        if record is None or record.phase != "search":
            return
        scheduler = plan.tasks[record.task].scheduler
        if scheduler is not None:
            scheduler._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return "Per-task ASHA (search) and FIFO (confirmation)."


class PlanStopper(Stopper):
    """Stops each trial at its own budget (search and confirmation lengths differ)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        target = _plan().target_iterations(trial_id)
        return target is not None and int(result.get("training_iteration", 0)) >= target

    def stop_all(self) -> bool:
        return False
