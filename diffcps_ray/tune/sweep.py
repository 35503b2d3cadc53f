"""A sweep: every task's search and confirmation in one Tune experiment, kept resumable.

Search: per task, an Optuna study (tune/studies.py) proposes kappa and lambda_clip, the
paper's values first, and the task's ASHA rungs stop weak trials early. Confirmation: as
soon as a task's search has finished, its chosen config (tune/selection.py) runs with N
seeds. Ablations run their grid the same way, without a search. What runs next is the
plan's business (tune/plan.py), behind Tune's interfaces (tune/adapters.py); this module
wires them together and keeps experiment.json (tune/record.py) true.

Fault tolerance: trials checkpoint at their evaluation iterations and at the end, keeping
the latest and the best-scoring checkpoint; FailureConfig retries a trial whose worker or
node died from its last checkpoint. Ctrl-C or SIGTERM stops the sweep with Tune's state
saved; ``--resume`` restores it with ``Tuner.restore`` (trials, the plan, ASHA rungs),
reopens the Optuna studies, and finishes what is left, the policy export included. The
record says "done" only once every trial has finished and the policies are exported.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffcps_ray.errors import DiffCPSError
from diffcps_ray.results import finite_number, metric_value
from diffcps_ray.tune.plan import PlanTrial, SearchSpec, SweepPlan, TaskPlan
from diffcps_ray.tune.ray_start import Resources, concurrency
from diffcps_ray.tune.record import (
    CheckpointKind,
    CheckpointRef,
    ExperimentRecord,
    ExperimentStatus,
    Phase,
    RunPhase,
    SearchPhase,
    SearchTask,
    TaskState,
    TaskStatus,
    TrialRow,
    TrialStatus,
)
from diffcps_ray.tune.selection import select
from diffcps_ray.tune.store import SWEEP_DIR, ExperimentStore, trial_dirname, trial_path
from diffcps_ray.tune.studies import (
    JOURNAL_DIR,
    JournalMirror,
    StudyLocation,
    TaskStudy,
    sampler_seed,
)
from diffcps_ray.tune.suites import METRIC, MODE, Budget, PhaseBudget, Suite, TaskEntry
from diffcps_ray.tune.trial_config import RunSettings, TrialConfig

SEARCH_SEED = 0  # every search trial trains with this seed; confirmation uses 1..N
MAX_FAILURES = 2  # retries per trial (worker death, node loss) from its last checkpoint
RESOURCES_REFRESH_S = 10.0  # how often the trial limit looks at the cluster's size again


@dataclass
class SweepOptions:
    """Everything a sweep needs besides the suite; recorded in experiment.json."""

    suite: str
    budget: str
    tasks: list[str]
    data_root: str
    storage: str
    name: str
    address: str | None
    gpus_per_trial: float
    cpus_per_trial: float
    num_samples: int
    seeds: int
    max_concurrent: int | None
    data_cpus: float
    base: str | None = None
    optuna_storage: str | None = None
    loggers: list[str] = field(default_factory=list)  # --logger: tensorboard, wandb, mlflow

    @property
    def resources(self) -> Resources:
        return Resources(self.cpus_per_trial, self.gpus_per_trial, self.data_cpus,
                         self.max_concurrent)


class SweepInterruptedError(DiffCPSError):
    """The sweep stopped before every trial finished (a signal, or Tune stopping early)."""


def resume_command(storage: str, name: str) -> str:
    return f"python -m diffcps_ray.tune --storage {storage} --name {name} --resume"


def budget_from_record(settings: dict[str, Any]) -> Budget:
    """The Budget a record's ``budget_settings`` describe."""
    values = dict(settings)
    for phase in ("search", "confirm"):
        values[phase] = PhaseBudget(**values[phase])
    return Budget(**values)


def changed_keys(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two nested dicts."""
    changes = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += changed_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old} -> {new}")
    return changes


class _NoTuneRestoreHint(logging.Filter):
    """Drops Tune's own "Resume experiment with: Tuner.restore(...)" after an interrupt:
    the sweep prints the one command that continues it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


@contextmanager
def _tune_fit_guards() -> Iterator[None]:
    """Around ``Tuner.fit``: our resume hint only, and our SIGINT handler back afterwards.

    Tune installs its own SIGINT handler for the fit and leaves it installed when the fit
    ends normally: a Ctrl-C during the policy export would then only set Tune's flag.
    """
    tune_logger = logging.getLogger("ray.tune.tune")
    hint_filter = _NoTuneRestoreHint()
    tune_logger.addFilter(hint_filter)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        yield
    finally:
        tune_logger.removeFilter(hint_filter)
        if main_thread and previous is not None:
            signal.signal(signal.SIGINT, previous)


class Sweep:
    """Runs (or resumes) one experiment and keeps experiment.json current.

    It is the plan's driver (tune/plan.py SweepContext, tune/adapters.py Driver): it
    opens the Optuna studies, sizes the trial limit to the cluster, records each task's
    choice and ending, and exports the confirmed policies.
    """

    def __init__(
        self,
        suite: Suite,
        opts: SweepOptions,
        command: str,
        resume: bool,
        trainable: Any = None,
        log: Callable[[str], None] = print,
        callbacks: list[Any] | None = None,
        export_policies: bool = True,
    ) -> None:
        self.suite = suite
        # Off only for stand-in trainables (benchmarks), whose checkpoints hold no policy.
        self.export_after = export_policies
        self.opts = opts
        self.tasks = suite.select_tasks(opts.tasks)
        self.store = ExperimentStore(opts.storage, opts.name)
        self.journals = JournalMirror(self.store, [task.name for task in self.tasks])
        self.log = log
        self.extra_callbacks = list(callbacks or [])
        if trainable is None:
            from diffcps_ray.tune.trainable import DiffCPSTrial

            trainable = DiffCPSTrial
        self.trainable = trainable
        self.plan: SweepPlan | None = None
        self._studies: dict[str, TaskStudy] = {}
        self._cluster: tuple[float, dict[str, float]] | None = None
        self._waiting_for_gpus = False
        budget = suite.budget(opts.budget)
        if self.store.exists():
            if not resume:
                raise DiffCPSError(
                    f"Experiment {self.store.uri} already exists: pass --resume to continue "
                    f"it, or choose another --name."
                )
            self.record = self.store.read_record()
            changes = changed_keys(self.record.budget_settings, _budget_settings(budget))
            self.budget = budget_from_record(self.record.budget_settings)
            if changes:
                self.log(f"[sweep] the suite's {opts.budget!r} budget changed since this "
                         f"sweep started ({'; '.join(changes)}); resuming with the budget "
                         f"it started with.")
        else:
            self.budget = budget
            self.record = ExperimentRecord(
                suite=suite.name, budget=opts.budget, command=command, options=asdict(opts),
                budget_settings=_budget_settings(budget),
                behaviour_scores={task: entry.behaviour_score
                                  for task, entry in suite.tasks.items()
                                  if entry.behaviour_score is not None},
            )

    # -- experiment.json --

    def save(self) -> None:
        self.store.write_record(self.record)
        self.journals.upload()

    def mark_interrupted(self) -> None:
        """Say in experiment.json that the sweep stopped unfinished (after a signal)."""
        if self.record.status != ExperimentStatus.DONE:
            self.record.status = ExperimentStatus.INTERRUPTED
            self.save()

    def resume_command(self) -> str:
        return resume_command(self.opts.storage, self.opts.name)

    def failed_tasks(self) -> dict[str, str]:
        """Tasks that produced no result, with why (a skipped or failed confirmation)."""
        phase = self.record.run_phase
        if phase is None:
            return {}
        return {task: f"{state.status}: {state.reason}" for task, state in phase.tasks.items()
                if state.status in (TaskStatus.SKIPPED, TaskStatus.FAILED)}

    # -- the run --

    def run(self) -> ExperimentRecord:
        """Every task's search and confirmation (or the ablation grid), then the export.

        Ray must be initialised by the caller. Raises SweepInterruptedError when Tune stopped
        before every trial finished (Ctrl-C, SIGTERM): the state is saved for --resume.
        """
        from diffcps_ray.tune.adapters import can_restore, driving, restore
        from diffcps_ray.tune.ray_start import tune_environment

        if self.record.status == ExperimentStatus.DONE:
            self.log(f"[sweep] {self.store.uri} finished earlier; nothing to run.")
            return self.record
        self.record.options = asdict(self.opts)
        self.record.status = ExperimentStatus.RUNNING
        self._record_phases()
        self.journals.download()
        self.save()
        trainable = self._trainable_with_resources()
        with driving(self), tune_environment(), _tune_fit_guards():
            if can_restore(self.store.sweep_uri):
                self.log(f"[sweep] resuming {self.store.sweep_uri}")
                tuner = restore(self.store.sweep_uri, trainable)
            else:
                tuner = self._new_tuner(trainable)
            self._note_gpu_wait()
            results = tuner.fit()
            if self.plan is None:
                raise DiffCPSError(f"{self.store.sweep_uri} holds no sweep plan.")
        kept = kept_checkpoints(results, self.store)
        self.record.trials = [trial_row(trial, *kept.get(trial.trial_id, (None, {})))
                              for trial in self.plan.trials.values()]
        if not self.plan.finished():
            self.mark_interrupted()
            raise SweepInterruptedError(
                f"The sweep stopped before every trial finished; continue it with: "
                f"{self.resume_command()}"
            )
        self.save()
        if self.export_after and not self.suite.is_ablation:
            self.export_policies()
        self.record.status = ExperimentStatus.DONE
        for phase in (self.record.confirm, self.record.ablation):
            if phase is not None:
                phase.status = TaskStatus.DONE
        self.save()
        return self.record

    def export_policies(self) -> None:
        """Each confirmation run's best and final policy under <experiment>/policies/."""
        from diffcps_ray.policy.export import export_sweep_policies

        written = export_sweep_policies(self.store.uri, self.record, log=self.log)
        if written:
            self.log(f"[policies] {len(written)} policies exported to "
                     f"{self.store.uri}/policies (python -m diffcps_ray.evaluate "
                     f"{self.store.uri})")

    def _trainable_with_resources(self) -> Any:
        from ray import tune

        return tune.with_resources(
            self.trainable, {"cpu": self.opts.cpus_per_trial, "gpu": self.opts.gpus_per_trial}
        )

    def _new_tuner(self, trainable: Any) -> Any:
        from ray import tune

        from diffcps_ray.tune.adapters import (
            PlanStopper,
            SweepScheduler,
            SweepSearcher,
            checkpoint_config,
        )
        from diffcps_ray.tune.console import SweepReporter, TrialEvents
        from diffcps_ray.tune.tracking import logger_callbacks

        plan = self.build_plan()
        self.attach(plan)
        for line in self._plan_lines():
            self.log(line)
        return tune.Tuner(
            trainable,
            param_space={},
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode=MODE,
                search_alg=SweepSearcher(plan),
                scheduler=SweepScheduler(),
                num_samples=plan.total_trials,
                trial_dirname_creator=lambda trial: trial_dirname(
                    trial.config.get("phase", "trial"), trial.trial_id),
                trial_name_creator=lambda trial: f"{trial.config.get('task', '')}_"
                                                 f"{trial.trial_id}",
                reuse_actors=True,  # saves a process start and imports per trial
            ),
            run_config=tune.RunConfig(
                name=SWEEP_DIR,
                storage_path=self.store.storage_path if "://" in self.store.uri
                else str(Path(self.store.uri)),
                stop=PlanStopper(),
                checkpoint_config=checkpoint_config(),
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                progress_reporter=SweepReporter(self.store.sweep_uri, plan.total_trials),
                callbacks=[*logger_callbacks(self.opts.loggers, self.opts.name,
                                             self.store.uri),
                           TrialEvents(), *self.extra_callbacks],
                verbose=1,
            ),
        )

    def build_plan(self) -> SweepPlan:
        tasks = []
        for task in self.tasks:
            if self.suite.is_ablation:
                points = self.ablation_points(task)
                tasks.append(TaskPlan(task.name, None, points=points,
                                      expected_points=len(points)))
                continue
            base = TrialConfig(phase=Phase.SEARCH, task=task.name, kappa=0.0, lambda_clip=0.0,
                               seed=SEARCH_SEED, run=self.run_settings(self.budget.search, task),
                               settings=dict(task.overrides)).to_dict()
            for searched in task.search:
                base.pop(searched)
            spec = SearchSpec(
                distributions={k: (r.low, r.high) for k, r in task.search.items()},
                base_config=base,
                num_samples=self.opts.num_samples,
                grace_period=self.budget.grace_period,
                reduction_factor=self.budget.reduction_factor,
            )
            tasks.append(TaskPlan(task.name, spec, expected_points=self.opts.seeds))
        return SweepPlan(tasks, search_iterations=self.budget.search.iterations,
                         run_iterations=self.budget.confirm.iterations)

    def run_settings(self, phase: PhaseBudget, task: TaskEntry) -> RunSettings:
        """The non-searched part of a trial's config: lengths, data, devices."""
        return RunSettings(
            data_root=self.opts.data_root,
            iterations=phase.iterations,
            steps_per_iteration=phase.steps_per_iteration,
            eval_interval=phase.eval_interval,
            eval_episodes=phase.eval_episodes,
            lambda_clip_zero_below=task.search["lambda_clip"].zero_below,
            num_gpus=self.opts.gpus_per_trial,
            torch_threads=max(1, int(self.opts.cpus_per_trial)),
        )

    def _plan_lines(self) -> list[str]:
        if self.suite.is_ablation:
            return [f"[ablation] {len(self.tasks)} task(s) x {self.suite.grid} x "
                    f"{self.opts.seeds} seed(s), {self.budget.confirm.gradient_steps:,} steps"]
        lines = []
        for task in self.tasks:
            first = {k: r.first_point for k, r in task.search.items()}
            paper = ", ".join(
                f"{k}={value:g}"
                + (f" (sampled as the range's floor {first[k]:g})" if value != first[k] else "")
                for k, value in task.paper_point.items()
            )
            lines.append(
                f"[search] {task.name}: {self.opts.num_samples} trials x up to "
                f"{self.budget.search.gradient_steps:,} steps, the paper's config first: {paper}"
            )
        lines.append(
            f"[confirm] each task's chosen config x {self.opts.seeds} seed(s) x "
            f"{self.budget.confirm.gradient_steps:,} steps, "
            f"{self.budget.confirm.eval_episodes} evaluation episodes, as soon as its "
            f"search has finished"
        )
        return lines

    def _record_phases(self) -> None:
        record = self.record
        seeds = list(range(1, self.opts.seeds + 1))
        if self.suite.is_ablation:
            if record.ablation is None:
                record.ablation = RunPhase(
                    budget=asdict(self.budget.confirm), seeds=seeds, grid=self.suite.grid,
                    tasks={task.name: TaskState(TaskStatus.RUNNING) for task in self.tasks})
            return
        if record.search is None:
            record.search = SearchPhase(metric=METRIC, mode=MODE,
                                        budget=asdict(self.budget.search))
        for task in self.tasks:
            location = self.study_location(task.name)
            record.search.tasks.setdefault(task.name, SearchTask(
                status=TaskStatus.RUNNING,
                paper={k: r.paper for k, r in task.search.items()},
                ranges={k: [r.low, r.high] for k, r in task.search.items()},
                optuna_storage=location.url or f"{JOURNAL_DIR}/{task.name}.journal",
                study_name=location.study_name,
            ))
        if record.confirm is None:
            record.confirm = RunPhase(
                budget=asdict(self.budget.confirm), seeds=seeds,
                tasks={task.name: TaskState(TaskStatus.WAITING) for task in self.tasks})

    # -- the plan's driver (called while Tune runs) --

    def attach(self, plan: SweepPlan) -> None:
        """The plan Tune runs (a restored Tuner brings its own copy)."""
        self.plan = plan
        plan.attach(self)
        for task in plan.tasks.values():
            if task.search is not None and not task.search_done:
                orphans = self.study(task.name).forget_unknown(
                    plan.known_study_trials(task.name))
                if orphans:
                    self.log(f"[search] {task.name}: study trial(s) "
                             f"{', '.join(map(str, orphans))} were proposed after the last "
                             f"save and never ran; marked failed in the study.")
        plan.restart_finished_checks()

    def trial_limit(self) -> int:
        import time

        now = time.monotonic()
        if self._cluster is None or now - self._cluster[0] > RESOURCES_REFRESH_S:
            import ray

            self._cluster = (now, dict(ray.cluster_resources()))
            self._note_gpu_wait()
        return concurrency(self.opts.resources, self._cluster[1])

    def trial_resources(self) -> dict[str, float]:
        return self.opts.resources.per_trial()

    def study(self, task: str) -> TaskStudy:
        if task not in self._studies:
            entry = self.suite.tasks[task]
            first = {k: r.first_point for k, r in entry.search.items()}
            self._studies[task] = TaskStudy(self.study_location(task),
                                            sampler_seed(self.suite.name, task),
                                            self.opts.num_samples, first)
        return self._studies[task]

    def propose_search(self, task: str, index: int) -> tuple[dict[str, float], int]:
        spec = self.plan.tasks[task].search
        return self.study(task).propose(index, spec.distributions)

    def tell_search(self, task: str, study_trial: int, status: TrialStatus,
                    score: float | None) -> None:
        self.study(task).tell(study_trial, status, score)

    def search_done(self, task: str, trials: list[PlanTrial]) -> list[dict[str, Any]]:
        rows = [trial_row(trial) for trial in trials]
        self.record.replace_trials(Phase.SEARCH, task, rows)
        entry = self.suite.tasks[task]
        selection = select(rows, entry.paper_point)
        best = selection.chosen
        search_task = self.record.search.tasks[task]
        search_task.status = TaskStatus.DONE
        search_task.selection = selection.reason
        search_task.best = None if best is None else {
            "trial_id": best.trial_id, "path": best.path, "kappa": best.kappa,
            "lambda_clip": best.lambda_clip, "score": best.score}
        raw = None
        if best is not None:
            config = next(t.config for t in trials if t.trial_id == best.trial_id)
            raw = {"kappa": config["kappa"], "lambda_clip": config["lambda_clip"]}
        search_task.best_raw = raw
        errors = [row for row in rows if row.status == TrialStatus.ERROR]
        if best is None:
            reason = f"no successful search trial ({len(errors)} of {len(rows)} failed"
            reason += f"; first error: {errors[0].error})" if errors and errors[0].error else ")"
            self.record.confirm.tasks[task] = TaskState(TaskStatus.SKIPPED, reason)
            self.log(f"[search] {task}: {reason}; nothing to confirm.")
        else:
            self.record.confirm.tasks[task] = TaskState(TaskStatus.RUNNING)
            chosen = (f"confirming kappa={best.kappa:g}, lambda_clip={best.lambda_clip:g} "
                      f"(trial {best.trial_id}, final score {best.score:.1f})")
            why = "" if selection.reason == "the top-scoring trial" else f"; {selection.reason}"
            failed = f" ({len(errors)} trial(s) failed)" if errors else ""
            self.log(f"[search] {task}: {chosen}{why}{failed}")
        self.save()
        return [] if raw is None else self.confirm_points(entry, raw)

    def task_done(self, task: str, trials: list[PlanTrial]) -> None:
        phase = Phase.ABLATION if self.suite.is_ablation else Phase.CONFIRM
        phase_record = self.record.run_phase
        rows = [trial_row(trial) for trial in trials]
        self.record.replace_trials(phase, task, rows)
        state = phase_record.tasks.get(task)
        if state is not None and state.status == TaskStatus.SKIPPED:
            self.save()  # nothing ran: the search's reason stands
            return
        scored = [row for row in rows if row.status != TrialStatus.ERROR
                  and row.score is not None]
        # A trial that failed after an evaluation still has its best-of-run checkpoint.
        evaluated = [row for row in rows if row.score is not None or row.best_score is not None]
        if rows and not evaluated:
            first_error = next((row.error for row in rows if row.error), "no score")
            phase_record.tasks[task] = TaskState(
                TaskStatus.FAILED, f"every {phase} trial failed (first error: {first_error})")
            self.log(f"[{phase}] {task}: every trial failed.")
        else:
            phase_record.tasks[task] = TaskState(TaskStatus.DONE)
            if phase == Phase.CONFIRM:
                self.log(f"[confirm] {task}: {len(rows)} seed(s) finished, final scores "
                         + ", ".join(f"{row.score:.1f}" for row in scored))
        self.save()

    # -- points --

    def confirm_points(self, task: TaskEntry, raw: dict[str, float]) -> list[dict[str, Any]]:
        run = self.run_settings(self.budget.confirm, task)
        return [TrialConfig(phase=Phase.CONFIRM, task=task.name, kappa=raw["kappa"],
                            lambda_clip=raw["lambda_clip"], seed=seed, run=run,
                            settings=dict(task.overrides)).to_dict()
                for seed in range(1, self.opts.seeds + 1)]

    def ablation_points(self, task: TaskEntry) -> list[dict[str, Any]]:
        points = []
        ((key, values),) = self.suite.grid.items()
        # Grid values are taken literally: no zero floor.
        run = dataclasses.replace(self.run_settings(self.budget.confirm, task),
                                  lambda_clip_zero_below=0.0)
        for value in values:
            for seed in range(1, self.opts.seeds + 1):
                kappa = task.search["kappa"].paper
                lambda_clip = task.search["lambda_clip"].paper
                settings = dict(task.overrides)
                if key == "kappa":
                    kappa = value
                elif key == "lambda_clip":
                    lambda_clip = value
                else:
                    settings[key] = value
                points.append(TrialConfig(
                    phase=Phase.ABLATION, task=task.name, kappa=kappa,
                    lambda_clip=lambda_clip, seed=seed, run=run, settings=settings,
                    variant={key: value}).to_dict())
        return points

    # -- Optuna studies --

    def study_location(self, task: str) -> StudyLocation:
        name = f"{self.opts.name}/{task}"
        if self.opts.optuna_storage:
            return StudyLocation(name, url=self.opts.optuna_storage)
        return StudyLocation(name, journal=f"{self.journals.local_dir()}/{task}.journal")

    # -- waiting for GPUs --

    def note_trial_started(self) -> None:
        if self._waiting_for_gpus:
            self._say_gpus_arrived()

    def _say_gpus_arrived(self) -> None:
        import ray

        gpus = float(ray.cluster_resources().get("GPU", 0))
        self.log(f"[sweep] {gpus:g} GPU(s) available now; trials start.")
        self._waiting_for_gpus = False

    def _note_gpu_wait(self) -> None:
        """Say once that trials wait for GPUs, and once that they have come."""
        if self.opts.gpus_per_trial <= 0:
            return
        import ray

        gpus = float(ray.cluster_resources().get("GPU", 0))
        waiting = gpus < self.opts.gpus_per_trial
        if waiting and not self._waiting_for_gpus:
            self.log(
                f"[sweep] waiting for GPUs: the Ray cluster has {gpus:g} and a trial needs "
                f"{self.opts.gpus_per_trial:g}; trials start as GPU nodes join (an "
                f"autoscaler adds them for the pending trial). Ctrl-C stops and keeps the "
                f"sweep for --resume."
            )
            self._waiting_for_gpus = True
        elif not waiting and self._waiting_for_gpus:
            self._say_gpus_arrived()


def _budget_settings(budget: Budget) -> dict[str, Any]:
    settings = asdict(budget)
    settings.pop("name", None)
    return settings


# --- Tune's results -> experiment rows -----------------------------------------------------


def trial_row(trial: PlanTrial, error: str | None = None,
              checkpoints: dict[CheckpointKind, CheckpointRef | None] | None = None) -> TrialRow:
    """One experiment row from the plan's view of a trial (and Tune's error and checkpoints)."""
    from diffcps_ray.tune.trial_config import effective_lambda_clip

    result = trial.result
    episodes = finite_number(metric_value(result, "evaluation/num_episodes"))
    return TrialRow(
        phase=trial.phase,
        task=trial.task,
        trial_id=trial.trial_id,
        path=trial_path(str(trial.phase), trial.trial_id),
        kappa=finite_number(trial.config.get("kappa")),
        lambda_clip=effective_lambda_clip(trial.config),
        seed=trial.config.get("seed"),
        status=trial.status if trial.finished else TrialStatus.INTERRUPTED,
        iterations=trial.iterations_done,
        score=trial.score,
        best_score=finite_number(metric_value(result, "evaluation/best_normalized_score")),
        score_std=finite_number(metric_value(result, "evaluation/normalized_score_std")),
        eval_episodes=None if episodes is None else int(episodes),
        error=error or trial.error,
        variant=trial.config.get("variant"),
        study_trial=trial.study_trial,
        checkpoints=dict(checkpoints or {}),
    )


def kept_checkpoints(results: Any, store: ExperimentStore) -> dict[
        str, tuple[str | None, dict[CheckpointKind, CheckpointRef | None]]]:
    """Per trial id: its one-line error and its best and final kept checkpoints.

    ``best``: the kept checkpoint with the highest evaluation score at its own iteration
    (tune/adapters.py checkpoint_config); ``final``: the latest one (Tune's
    ``Result.checkpoint``, with the trial's last result).
    """
    from diffcps_ray.tune.trainable import CHECKPOINT_SCORE

    kept: dict[str, tuple[str | None, dict[CheckpointKind, CheckpointRef | None]]] = {}
    for result in results:
        trial_id = Path(result.path).name.split("_", 1)[-1]
        error = None if result.error is None else _one_line(result.error)

        def ref(checkpoint: Any, metrics: dict) -> CheckpointRef:
            return CheckpointRef(store.relative(checkpoint.path),
                                 int(metrics.get("training_iteration", 0) or 0),
                                 finite_number(metrics.get(CHECKPOINT_SCORE)))

        scored = [ref(checkpoint, metrics) for checkpoint, metrics
                  in (result.best_checkpoints or []) if checkpoint is not None]
        scored = [item for item in scored if item.score is not None]
        checkpoints: dict[CheckpointKind, CheckpointRef | None] = {
            CheckpointKind.BEST: max(scored, key=lambda item: item.score) if scored else None,
            CheckpointKind.FINAL: None if result.checkpoint is None
            else ref(result.checkpoint, result.metrics or {}),
        }
        kept[trial_id] = (error, checkpoints)
    return kept


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    # Ray wraps the trial's exception; its last line holds our sentence.
    for line in reversed(text):
        if line.strip():
            return line.strip()[:500]
    return type(error).__name__
