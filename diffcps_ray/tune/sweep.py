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

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffcps_ray.errors import DiffCPSError
from diffcps_ray.tune.plan import PlanTrial, SearchSpec, SweepPlan, TaskPlan
from diffcps_ray.tune.ray_start import GpuWait, Resources, concurrency
from diffcps_ray.tune.record import (
    ExperimentRecord,
    ExperimentStatus,
    Phase,
    RunPhase,
    SearchPhase,
    SearchTask,
    TaskState,
    TaskStatus,
    TrialStatus,
)
from diffcps_ray.tune.selection import select
from diffcps_ray.tune.store import SWEEP_DIR, ExperimentStore, trial_dirname
from diffcps_ray.tune.studies import (
    JOURNAL_DIR,
    JournalMirror,
    StudyLocation,
    TaskStudy,
    sampler_seed,
)
from diffcps_ray.tune.suites import (
    METRIC,
    MODE,
    PhaseBudget,
    Suite,
    TaskEntry,
    budget_from_settings,
    budget_settings,
    changed_keys,
)
from diffcps_ray.tune.trial_config import (
    RunSettings,
    TrialConfig,
    ablation_configs,
    confirm_configs,
    run_settings,
)

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
        self.gpu_wait = GpuWait(opts.gpus_per_trial)
        budget = suite.budget(opts.budget)
        if self.store.exists():
            if not resume:
                raise DiffCPSError(
                    f"Experiment {self.store.uri} already exists: pass --resume to continue "
                    f"it, or choose another --name."
                )
            self.record = self.store.read_record()
            changes = changed_keys(self.record.budget_settings, budget_settings(budget))
            self.budget = budget_from_settings(self.record.budget_settings)
            if changes:
                self.log(f"[sweep] the suite's {opts.budget!r} budget changed since this "
                         f"sweep started ({'; '.join(changes)}); resuming with the budget "
                         f"it started with.")
        else:
            self.budget = budget
            self.record = ExperimentRecord(
                suite=suite.name, budget=opts.budget, command=command, options=asdict(opts),
                budget_settings=budget_settings(budget),
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
        from diffcps_ray.tune.adapters import (
            can_restore,
            driving,
            kept_checkpoints,
            restore,
            tune_fit_guards,
        )
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
        with driving(self), tune_environment(), tune_fit_guards():
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
        self.record.trials = [trial.to_row(*kept.get(trial.trial_id, (None, {})))
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
        from diffcps_ray.tune.console import SweepReporter, TrialEvents, plan_lines
        from diffcps_ray.tune.tracking import logger_callbacks

        plan = self.build_plan()
        self.attach(plan)
        for line in plan_lines(self.suite, self.tasks, self.budget, self.opts.num_samples,
                               self.opts.seeds):
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
        return run_settings(phase, task.search["lambda_clip"].zero_below, self.opts.data_root,
                            self.opts.gpus_per_trial, self.opts.cpus_per_trial)

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
            self._note_gpu_wait(self._cluster[1])
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
        rows = [trial.to_row() for trial in trials]
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
            why = f"; {selection.reason}" if selection.kept_paper else ""
            failed = f" ({len(errors)} trial(s) failed)" if errors else ""
            self.log(f"[search] {task}: {chosen}{why}{failed}")
        self.save()
        return [] if raw is None else self.confirm_points(entry, raw)

    def task_done(self, task: str, trials: list[PlanTrial]) -> None:
        phase = Phase.ABLATION if self.suite.is_ablation else Phase.CONFIRM
        phase_record = self.record.run_phase
        rows = [trial.to_row() for trial in trials]
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
        return [config.to_dict() for config in confirm_configs(
            task, raw, self.run_settings(self.budget.confirm, task), self.opts.seeds)]

    def ablation_points(self, task: TaskEntry) -> list[dict[str, Any]]:
        return [config.to_dict() for config in ablation_configs(
            task, self.suite.grid, self.run_settings(self.budget.confirm, task),
            self.opts.seeds)]

    # -- Optuna studies --

    def study_location(self, task: str) -> StudyLocation:
        name = f"{self.opts.name}/{task}"
        if self.opts.optuna_storage:
            return StudyLocation(name, url=self.opts.optuna_storage)
        return StudyLocation(name, journal=f"{self.journals.local_dir()}/{task}.journal")

    # -- waiting for GPUs --

    def note_trial_started(self) -> None:
        message = self.gpu_wait.trial_started()
        if message:
            self.log(message)

    def _note_gpu_wait(self, cluster: dict[str, float] | None = None) -> None:
        """``cluster``: the resources just read (None: ask Ray)."""
        if cluster is None:
            import ray

            cluster = ray.cluster_resources()
        message = self.gpu_wait.check(float(cluster.get("GPU", 0)))
        if message:
            self.log(message)
