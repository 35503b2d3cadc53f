"""What runs next in a sweep: every task's search and confirmation in one Tune experiment.

Pure bookkeeping, no Ray: tune/adapters.py puts it behind Tune's Searcher, Scheduler and
Stopper, and tune/sweep.py is the ``SweepContext`` it asks for proposals and tells of endings.

Why one Tuner for the whole sweep, with a per-task searcher and per-task ASHA inside it:
- one concurrency limit covers every task, so a cluster's slots are filled by whichever
  task has work, and a 2-slot machine still makes progress on every task (search
  proposals are handed out round-robin over the tasks);
- a task's confirmation seeds are proposed the moment its search has chosen a config, while
  other tasks are still searching (confirmations go first: they are the critical path);
- scores of different tasks are never compared: each task has its own Optuna study
  (studies.py) and its own ASHA rungs (``AshaRungs``);
- one experiment directory, one ``Tuner.restore`` and one searcher state make ``--resume``
  continue from any point, mid-search or mid-confirmation, with nothing to reconcile
  between phases.
How close this order comes to the best possible makespan is modelled in
bench/schedule_model.py and discussed in docs/performance.md.

A trial counts as finished only for a reason the sweep knows: it ran its iterations, ASHA
stopped it, or it failed for good. A trial stopped any other way (Ctrl-C, SIGTERM, a lost
driver) is unfinished: it is resumed from its checkpoint, and no config is chosen from it.

The plan's state (``to_state``) is plain JSON data, saved with every Tune snapshot.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from diffcps_ray.results import finite_number, metric_value
from diffcps_ray.tune.record import CheckpointKind, CheckpointRef, Phase, TrialRow, TrialStatus
from diffcps_ray.tune.store import trial_path
from diffcps_ray.tune.suites import METRIC
from diffcps_ray.tune.trial_config import effective_lambda_clip

FINISHED = "FINISHED"  # suggest(): nothing more will be proposed (Tune's Searcher.FINISHED)
ITERATION_KEY = "training_iteration"
# The last-result keys a trial's record row and the selection need.
KEPT_RESULT_KEYS = (
    METRIC, "evaluation/best_normalized_score", "evaluation/normalized_score_std",
    "evaluation/num_episodes", ITERATION_KEY, "num_gradient_steps",
)
_FINISHED_STATUSES = (TrialStatus.TERMINATED, TrialStatus.STOPPED_EARLY, TrialStatus.ERROR)


class SweepContext(Protocol):
    """The driver's side of a running sweep (tune/sweep.py's Sweep implements it)."""

    def trial_limit(self) -> int:
        """How many trials may be live at once now (the cluster may grow)."""

    def propose_search(self, task: str, index: int) -> tuple[dict[str, float], int]:
        """The ``index``-th search proposal of ``task``: its params and study trial number."""

    def tell_search(self, task: str, study_trial: int, status: TrialStatus,
                    score: float | None) -> None:
        """A search trial ended: tell the task's study."""

    def search_done(self, task: str, trials: list[PlanTrial]) -> list[dict[str, Any]]:
        """Record the task's search and choose its config; returns its confirmation configs."""

    def task_done(self, task: str, trials: list[PlanTrial]) -> None:
        """Every confirmation (or ablation) trial of the task has finished."""


@dataclass
class PlanTrial:
    """One trial as the plan sees it: what it runs, how far it got, how it ended."""

    trial_id: str
    task: str
    phase: Phase
    config: dict[str, Any]  # TrialConfig.to_dict(), as Tune carries it
    iterations: int  # the trial's budget
    study_trial: int | None = None  # the Optuna trial number (search only)
    status: TrialStatus | None = None  # None: running (or interrupted)
    result: dict[str, Any] = field(default_factory=dict)
    stopped_by_asha: bool = False
    error: str | None = None  # the last line of a failed trial's error

    @property
    def finished(self) -> bool:
        return self.status in _FINISHED_STATUSES

    @property
    def score(self) -> float | None:
        return finite_number(metric_value(self.result, METRIC))

    @property
    def iterations_done(self) -> int:
        return int(self.result.get(ITERATION_KEY, 0) or 0)

    def to_row(self, error: str | None = None,
               checkpoints: dict[CheckpointKind, CheckpointRef | None] | None = None) -> TrialRow:
        """The trial's experiment row (and Tune's error and checkpoints)."""
        result = self.result
        episodes = finite_number(metric_value(result, "evaluation/num_episodes"))
        return TrialRow(
            phase=self.phase,
            task=self.task,
            trial_id=self.trial_id,
            path=trial_path(str(self.phase), self.trial_id),
            kappa=finite_number(self.config.get("kappa")),
            lambda_clip=effective_lambda_clip(self.config),
            seed=self.config.get("seed"),
            status=self.status if self.finished else TrialStatus.INTERRUPTED,
            iterations=self.iterations_done,
            score=self.score,
            best_score=finite_number(metric_value(result, "evaluation/best_normalized_score")),
            score_std=finite_number(metric_value(result, "evaluation/normalized_score_std")),
            eval_episodes=None if episodes is None else int(episodes),
            error=error or self.error,
            variant=self.config.get("variant"),
            study_trial=self.study_trial,
            checkpoints=dict(checkpoints or {}),
        )


@dataclass
class AshaRungs:
    """Asynchronous successive halving for one task, as Tune's ASHAScheduler decides.

    Rungs at ``grace_period * reduction_factor**k`` iterations below ``max_t``; a trial
    reaching a rung stops when its score is below the ``1 - 1/reduction_factor`` quantile
    of the scores recorded there so far. Kept as plain data so the plan's state has no
    Tune objects in it (tests/test_tune_plan.py checks it against Tune's own ASHA).
    """

    grace_period: int
    reduction_factor: int
    max_t: int
    recorded: dict[str, dict[str, float]] = field(default_factory=dict)  # rung -> trial

    @property
    def milestones(self) -> list[int]:
        count = int(math.log(self.max_t / self.grace_period) / math.log(self.reduction_factor)
                    + 1)
        return [self.grace_period * self.reduction_factor ** k for k in reversed(range(count))]

    def should_stop(self, trial_id: str, iteration: int, score: float) -> bool:
        if iteration >= self.max_t:
            return False  # the end: the trial stops anyway, having run its budget
        for milestone in self.milestones:
            rung = self.recorded.get(str(milestone), {})
            if iteration < milestone or trial_id in rung:
                continue
            cutoff = (np.nanpercentile(list(rung.values()), (1 - 1 / self.reduction_factor)
                                       * 100) if rung else None)
            self.recorded.setdefault(str(milestone), {})[trial_id] = score
            return cutoff is not None and score < cutoff
        return False


@dataclass
class SearchSpec:
    """A task's search: the space, the trial's fixed part, its sample count and ASHA."""

    distributions: dict[str, tuple[float, float]]  # name -> (low, high), log-uniform
    base_config: dict[str, Any]  # TrialConfig.to_dict() without the searched values
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
    rungs: AshaRungs | None = None

    def __post_init__(self) -> None:
        if self.search is None:
            self.search_done = True
        elif self.rungs is None:
            self.rungs = AshaRungs(self.search.grace_period, self.search.reduction_factor,
                                   int(self.search.base_config["run"]["iterations"]))

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
        self.trials: dict[str, PlanTrial] = {}
        self.context: SweepContext | None = None  # the live driver; never saved

    def attach(self, context: SweepContext) -> None:
        self.context = context

    def _driver(self) -> SweepContext:
        if self.context is None:
            raise RuntimeError("The sweep plan runs without a driver attached.")
        return self.context

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
        return sum(not trial.finished for trial in self.trials.values())

    def proposals_left(self) -> bool:
        return any(not task.search_done or task.points_left for task in self.tasks.values())

    def finished(self) -> bool:
        return all(task.done for task in self.tasks.values())

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """A config for ``trial_id``; None: not now; FINISHED: nothing more, ever."""
        if not self.proposals_left():
            return FINISHED
        if self.live() >= max(1, self._driver().trial_limit()):
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
        params, study_trial = self._driver().propose_search(task.name, task.proposed_search)
        config = {**copy.deepcopy(task.search.base_config), **params}
        task.proposed_search += 1
        trial = self._register(trial_id, task.name, config, self.search_iterations)
        trial.study_trial = study_trial
        return config

    def _register(self, trial_id: str, task: str, config: dict[str, Any],
                  iterations: int) -> PlanTrial:
        trial = PlanTrial(trial_id, task, Phase(config["phase"]), config, iterations)
        self.trials[trial_id] = trial
        return trial

    def known_study_trials(self, task: str) -> set[int]:
        return {t.study_trial for t in self.task_trials(task, Phase.SEARCH)
                if t.study_trial is not None}

    # -- results and endings -------------------------------------------------------------

    def on_result(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Keep the trial's latest result; True when ASHA stops it here."""
        trial = self.trials.get(trial_id)
        if trial is None:
            return False
        trial.result = {k: result[k] for k in KEPT_RESULT_KEYS if k in result}
        task = self.tasks[trial.task]
        if trial.phase != Phase.SEARCH or task.rungs is None:
            return False
        score = finite_number(result.get(METRIC))
        if score is None:
            return False  # no evaluation yet: nothing to compare
        stop = task.rungs.should_stop(trial_id, trial.iterations_done, score)
        if stop and trial.iterations_done < trial.iterations:
            trial.stopped_by_asha = True
        return stop

    def note_error(self, trial_id: str, message: str | None) -> None:
        """A trial failed with ``message`` (before its completion is reported)."""
        trial = self.trials.get(trial_id)
        if trial is not None and message:
            trial.error = message

    def on_complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        trial = self.trials.get(trial_id)
        if trial is None or trial.finished:
            return
        if result:
            trial.result = {k: result[k] for k in KEPT_RESULT_KEYS if k in result}
        if error:
            trial.status = TrialStatus.ERROR
        elif trial.iterations_done >= trial.iterations:
            trial.status = TrialStatus.TERMINATED
        elif trial.stopped_by_asha:
            trial.status = TrialStatus.STOPPED_EARLY
        else:
            return  # stopped by an interrupt: it resumes, and counts for nothing yet
        task = self.tasks[trial.task]
        if trial.phase == Phase.SEARCH:
            if trial.study_trial is not None:
                self._driver().tell_search(trial.task, trial.study_trial, trial.status,
                                           trial.score)
            self._maybe_finish_search(task)
        else:
            self._maybe_finish_task(task)

    def _maybe_finish_search(self, task: TaskPlan) -> None:
        if task.search_done or task.search_left > 0:
            return
        trials = self.task_trials(task.name, Phase.SEARCH)
        if not all(trial.finished for trial in trials):
            return
        task.search_done = True
        task.points = list(self._driver().search_done(task.name, trials))
        self._maybe_finish_task(task)

    def _maybe_finish_task(self, task: TaskPlan) -> None:
        if task.done or not task.search_done or task.points_left:
            return
        trials = [t for t in self.trials.values()
                  if t.task == task.name and t.phase != Phase.SEARCH]
        if all(trial.finished for trial in trials):
            task.done = True
            self._driver().task_done(task.name, trials)

    def restart_finished_checks(self) -> None:
        """After a restore: finish what the saved state left one step short, if anything."""
        for task in self.tasks.values():
            self._maybe_finish_search(task)
            self._maybe_finish_task(task)

    def task_trials(self, task: str, phase: Phase | None = None) -> list[PlanTrial]:
        return [t for t in self.trials.values()
                if t.task == task and (phase is None or t.phase == phase)]

    def target_iterations(self, trial_id: str) -> int | None:
        trial = self.trials.get(trial_id)
        return None if trial is None else trial.iterations

    # -- state: plain data ---------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "search_iterations": self.search_iterations,
            "run_iterations": self.run_iterations,
            "tasks": [asdict(task) for task in self.tasks.values()],
            "trials": [asdict(trial) for trial in self.trials.values()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SweepPlan:
        state = copy.deepcopy(state)  # the plan changes its lists and dicts as it runs
        tasks = []
        for data in state["tasks"]:
            search, rungs = data["search"], data["rungs"]
            tasks.append(TaskPlan(**{
                **data,
                "search": None if search is None else SearchSpec(**{
                    **search, "distributions": {k: tuple(v) for k, v in
                                                search["distributions"].items()}}),
                "rungs": None if rungs is None else AshaRungs(**rungs),
            }))
        plan = cls(tasks, state["search_iterations"], state["run_iterations"])
        for data in state["trials"]:
            trial = PlanTrial(**{**data, "phase": Phase(data["phase"]),
                                 "status": None if data["status"] is None
                                 else TrialStatus(data["status"])})
            plan.trials[trial.trial_id] = trial
        return plan
