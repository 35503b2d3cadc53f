"""A sweep: every task's search and confirmation in one Tune experiment, kept resumable.

Search: per task, an Optuna study (tune/studies.py: seeded TPE, the paper's kappa and
lambda_clip evaluated first, persisted in the experiment directory) proposes kappa and
lambda_clip, and the task's own ASHA stops weak trials early on the evaluation score.
Confirmation: as soon as a task's search has finished, its chosen config runs with N
seeds. Ablations run their grid the same way, without a search. All of it is one Tune
experiment (``sweep/``), scheduled by tune/plan.py; its docstring says why one Tuner.

Fault tolerance: trials checkpoint at their evaluation iterations and at the end, keeping
the latest and the best-scoring checkpoint; FailureConfig retries a trial whose worker or
node died from its last checkpoint. Ctrl-C or SIGTERM stops the sweep with Tune's state
saved; ``--resume`` restores it with ``Tuner.restore`` (trials, the plan, ASHA rungs) and
reopens the Optuna studies. experiment.json records what finished and what was chosen.
"""

from __future__ import annotations

import math
import os
import posixpath
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from diffcps_ray.errors import DiffCPSError
from diffcps_ray.results import finite_number, metric_value, score_summary
from diffcps_ray.tune import plan as sweep_plan
from diffcps_ray.tune.manifest import (
    FORMAT_VERSION,
    ExperimentStore,
    new_manifest,
    replace_trials,
)
from diffcps_ray.tune.plan import SWEEP_DIR, SweepPlan, TaskPlan, TrialRecord
from diffcps_ray.tune.studies import JOURNAL_DIR, StudyLocation, open_study, sampler_seed
from diffcps_ray.tune.suites import METRIC, Budget, PhaseBudget, Suite, TaskEntry

MODE = "max"
SEARCH_SEED = 0  # every search trial trains with this seed; confirmation uses 1..N
MAX_FAILURES = 2  # retries per trial (worker death, node loss) from its last checkpoint
# docs/performance.md: about 2.3-2.6 GB of RAM per DiffCPS Algorithm across Ray's processes.
MEMORY_PER_TRIAL = 2.6e9
RESOURCES_REFRESH_S = 10.0
MAX_PENDING_TRIALS = 1000  # how often the trial limit looks at the cluster's size again


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


# Options a resumed sweep may change: where it runs and how big its trials are, not what
# it computes.
RESUMABLE_OPTIONS = ("address", "gpus_per_trial", "cpus_per_trial", "max_concurrent", "loggers",
                     "data_cpus")


class SweepInterruptedError(DiffCPSError):
    """The sweep stopped before every trial finished (a signal, or Tune stopping early)."""


# --- trial naming and reporting ------------------------------------------------------------


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (Tune's default embeds the whole config)."""
    return f"{trial.config.get('phase', 'trial')}_{trial.trial_id}"


def trial_name(trial: Any) -> str:
    return f"{trial.config.get('task', '')}_{trial.trial_id}"


class TrialEvents(Callback):
    """Tune callback: one console line per trial start, retry and failure.

    A failed trial's error is one line with the path of its full traceback, so that a
    sweep of hundreds of trials never hides a failure in Tune's table.
    """

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        context = sweep_plan._active
        if isinstance(context, Sweep) and context.waiting_for_gpus:
            context.note_gpus_arrived()
        _log(f"[sweep] started {_describe(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _log(f"[sweep] {_describe(trial)} failed and restarts from its last checkpoint: "
             f"{_error_line(trial)}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        _log(f"[sweep] {_describe(trial)} failed: {_error_line(trial)}")


def _log(message: str) -> None:
    context = sweep_plan._active
    (context.log if context is not None else print)(message)


def _describe(trial: Any) -> str:
    config = trial.config
    what = f"{config.get('phase', 'trial')} trial {trial.trial_id} ({config.get('task')}"
    if config.get("phase") == "search":
        what += f", kappa={config.get('kappa', 0):.3g}, lambda_clip="
        what += f"{effective_lambda_clip(config) or 0:.3g}"
    elif "seed" in config:
        what += f", seed {config['seed']}"
    return what + ")"


def _error_line(trial: Any) -> str:
    """The last line of the trial's error file, and where the whole traceback is."""
    name = getattr(trial.run_metadata, "error_filename", None)
    path = os.path.join(trial.local_path, name) if name else None
    if path and os.path.isfile(path):
        text = Path(path).read_text(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return f"{(lines[-1] if lines else 'no message')[:300]} (log: {path})"
    return f"see {trial.local_path}"


# --- trial configs -------------------------------------------------------------------------


def run_section(opts: SweepOptions, phase: PhaseBudget, task: TaskEntry) -> dict[str, Any]:
    """The non-searched part of a trial's config: lengths, data, devices."""
    zero_below = task.search["lambda_clip"].low if task.search["lambda_clip"].zero_floor else 0.0
    return {
        "data_root": opts.data_root,
        "iterations": phase.iterations,
        "steps_per_iteration": phase.steps_per_iteration,
        "eval_interval": phase.eval_interval,
        "eval_episodes": phase.eval_episodes,
        "lambda_clip_zero_below": zero_below,
        "num_gpus": opts.gpus_per_trial,
        "torch_threads": max(1, int(opts.cpus_per_trial)),
    }


def searcher_seed(suite: str, task: str) -> int:
    """A stable per-task seed for Optuna's sampler (kept for callers of the old name)."""
    return sampler_seed(suite, task)


# --- Ray and Tune plumbing -----------------------------------------------------------------


def start_ray(opts: SweepOptions) -> bool:
    """Join --address or start a local Ray; returns whether we started (and must stop) it."""
    import ray

    from diffcps_ray.runtime import thread_env
    from diffcps_ray.tune.reporting import ray_init_settings, worker_env

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {**thread_env(1), **worker_env(), "RAY_AIR_NEW_OUTPUT": "0"}}
    if opts.address:
        ray.init(address=opts.address, runtime_env=runtime_env,
                 **ray_init_settings(opts.address))
        return True
    # Logical CPUs beyond the cores stay free of trials for Ray Data's read tasks, which run
    # outside the trials' placement groups (with no spare CPU they wait forever). "local":
    # a new instance even where `ray start` left one running (ray.init() would join it and
    # then refuse num_cpus); --address joins a cluster.
    num_cpus = (os.cpu_count() or 1) + math.ceil(opts.data_cpus)
    ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env,
             **ray_init_settings(None, num_cpus))
    return True


def concurrency(opts: SweepOptions, resources: dict[str, float] | None = None) -> int:
    """How many trials may run at once: the CPUs (and GPUs) left after Ray Data's share.

    At least 1 even on a cluster without GPUs yet: a pending trial is what asks an
    autoscaler for a GPU node.
    """
    if opts.max_concurrent:
        return opts.max_concurrent
    if resources is None:
        import ray

        resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 1)) - opts.data_cpus
    limit = int(cpus // max(opts.cpus_per_trial, 1e-9))
    if opts.gpus_per_trial > 0:
        gpus = float(resources.get("GPU", 0))
        limit = min(limit, int(gpus // opts.gpus_per_trial + 1e-9))
    if resources.get("memory"):
        # Many cores and little RAM: trials would be killed by Ray's memory monitor.
        limit = min(limit, int(float(resources["memory"]) // MEMORY_PER_TRIAL))
    return max(1, limit)


def trial_resources(opts: SweepOptions) -> dict[str, float]:
    return {"CPU": float(opts.cpus_per_trial), "GPU": float(opts.gpus_per_trial)}


def checkpoint_config() -> Any:
    """Keep the latest checkpoint (to resume) and the best-scoring one (to export)."""
    from ray import tune

    return tune.CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE,
        checkpoint_at_end=True,
    )


def restorable(store: ExperimentStore, phase_dir: str = SWEEP_DIR) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(store.phase_uri(phase_dir))


def restore(store: ExperimentStore, phase_dir: str, trainable: Any) -> Any:
    from ray import tune

    return tune.Tuner.restore(
        store.phase_uri(phase_dir),
        trainable=trainable,
        resume_unfinished=True,
        # Errored trials failed for good (NaN, or out of retries): don't rerun them.
        resume_errored=False,
    )


# --- trial rows ----------------------------------------------------------------------------


def record_row(record: TrialRecord) -> dict[str, Any]:
    """One experiment.json row from the plan's view of a trial.

    Statuses: TERMINATED (ran its budget), STOPPED_EARLY (ASHA stopped it: complete),
    ERROR (failed for good), INTERRUPTED (a signal stopped it: ``--resume`` continues it).
    """
    config = record.config
    result = record.result
    return {
        "phase": record.phase,
        "task": record.task,
        "trial_id": record.trial_id,
        "path": record.path,
        "kappa": config.get("kappa"),
        "lambda_clip": effective_lambda_clip(config),
        "seed": config.get("seed"),
        "status": record.status if record.finished else "INTERRUPTED",
        "iterations": record.iterations_done,
        "score": finite_number(metric_value(result, METRIC)),
        "best_score": finite_number(metric_value(result, "evaluation/best_normalized_score")),
        # Episode-to-episode spread of the last evaluation and its episode count.
        "score_std": finite_number(metric_value(result, "evaluation/normalized_score_std")),
        "eval_episodes": finite_number(metric_value(result, "evaluation/num_episodes")),
        "error": None,
        **({"variant": config["variant"]} if "variant" in config else {}),
    }


def result_details(results: Any, store: ExperimentStore) -> dict[str, dict[str, Any]]:
    """Per trial id, what only Tune's results know: the error and the kept checkpoints."""
    details: dict[str, dict[str, Any]] = {}
    for result in results:
        trial_id = Path(result.path).name.split("_", 1)[-1]
        entry: dict[str, Any] = {}
        if result.error is not None:
            entry["error"] = _one_line(result.error)
        kept = [(checkpoint, metrics) for checkpoint, metrics in (result.best_checkpoints or [])
                if checkpoint is not None]
        if kept:
            def describe(checkpoint: Any, metrics: dict) -> dict[str, Any]:
                return {"path": store.relative(checkpoint.path),
                        "iteration": int(metrics.get("training_iteration", 0) or 0),
                        "score": finite_number(metric_value(metrics, METRIC))}

            scored = [pair for pair in kept
                      if finite_number(metric_value(pair[1], METRIC)) is not None]
            best = max(scored, key=lambda pair: metric_value(pair[1], METRIC)) if scored else None
            final = max(kept, key=lambda pair: pair[1].get("training_iteration", 0))
            entry["checkpoints"] = {
                "best": None if best is None else describe(*best),
                "final": describe(*final),
            }
        details[trial_id] = entry
    return details


def effective_lambda_clip(config: dict[str, Any]) -> float | None:
    """The lambda_clip a trial ran with (None for a config without one)."""
    from diffcps_ray.tune.bridge import effective_lambda_clip as effective

    return None if config.get("lambda_clip") is None else effective(config)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    # Ray wraps the trial's exception; its last line holds our sentence.
    for line in reversed(text):
        if line.strip():
            return line.strip()[:500]
    return type(error).__name__


SELECTION_MARGIN_SE = 2.0
"""A searched config replaces the paper's only if it scores this many standard errors of
the difference above it: with 10 evaluation episodes (+-12 points, docs/pointmaze.md),
picking the top score alone is a coin flip between close trials."""


def pick_best(rows: list[dict]) -> dict | None:
    """The best trial by its last score, preferring trials that ran the full length."""
    scored = [r for r in rows if r["status"] != "ERROR" and r["score"] is not None]
    full = [r for r in scored if r["status"] == "TERMINATED"]
    pool = full or scored
    return max(pool, key=lambda r: r["score"]) if pool else None


def _evaluation_se(row: dict) -> float | None:
    if row.get("score_std") is None or not row.get("eval_episodes"):
        return None
    return row["score_std"] / math.sqrt(row["eval_episodes"])


def keep_paper_within_noise(
    best: dict | None, rows: list[dict], paper: dict[str, float]
) -> tuple[dict | None, str | None]:
    """``best``, or the paper's config's trial when ``best`` does not beat it beyond noise.

    ``paper``: the paper's kappa and lambda_clip as trials run them. The paper's trial is
    kept when it ran as long as ``best`` and ``best`` leads it by less than
    ``SELECTION_MARGIN_SE`` standard errors of the difference (each trial's evaluation
    standard error: episode spread / sqrt(episodes)). Returns the pick and, when the paper's
    trial was kept, a sentence saying why.
    """
    if best is None:
        return best, None
    matches = [
        r for r in rows
        if r["status"] == best["status"] and r["score"] is not None
        and all(r.get(k) is not None and math.isclose(r[k], v, rel_tol=1e-6, abs_tol=1e-12)
                for k, v in paper.items())
    ]  # fmt: skip
    if not matches or best in matches:
        return best, None
    paper_row = max(matches, key=lambda r: r["score"])
    errors = [_evaluation_se(best), _evaluation_se(paper_row)]
    if None in errors:
        return best, None
    margin = SELECTION_MARGIN_SE * math.hypot(*errors)
    lead = best["score"] - paper_row["score"]
    if lead >= margin:
        return best, None
    return paper_row, (
        f"kept the paper's config: the top trial led it by {lead:.1f} points, less than "
        f"{SELECTION_MARGIN_SE:g} standard errors of the difference ({margin:.1f})"
    )


# --- the sweep -----------------------------------------------------------------------------


class Sweep:
    """Runs (or resumes) one experiment and keeps experiment.json current.

    It is the plan's ``SweepContext`` (tune/plan.py): it opens the Optuna studies, sizes
    the trial limit to the cluster, records each task's choice and ending.
    """

    def __init__(
        self,
        suite: Suite,
        opts: SweepOptions,
        command: str,
        resume: bool,
        trainable: Any = None,
        log=print,
        callbacks: list[Any] | None = None,
        export_policies: bool = True,
    ) -> None:
        self.suite = suite
        # Off only for stand-in trainables (benchmarks), whose checkpoints hold no policy.
        self.export_after = export_policies
        self.opts = opts
        self.budget: Budget = suite.budget(opts.budget)
        self.tasks = suite.select_tasks(opts.tasks)
        self.store = ExperimentStore(opts.storage, opts.name)
        self.log = log
        from diffcps_ray.tune.reporting import logger_callbacks

        # Tune's CSV/JSON loggers, --logger's trackers, then extra callbacks (tests).
        self.callbacks = [
            *logger_callbacks(opts.loggers, opts.name, self.store.uri),
            *(callbacks or []),
        ]
        if trainable is None:
            from diffcps_ray.tune.trainable import DiffCPSTrial

            trainable = DiffCPSTrial
        self.trainable = trainable
        self.plan: SweepPlan | None = None
        self._studies: dict[str, Any] = {}
        self._resources: tuple[float, dict[str, float]] | None = None
        self._waiting_for_gpus = False
        if self.store.exists():
            if not resume:
                raise DiffCPSError(
                    f"Experiment {self.store.uri} already exists: pass --resume to continue "
                    f"it, or choose another --name."
                )
            self.manifest = self.store.read_json()
            version = self.manifest.get("format_version")
            if version != FORMAT_VERSION:
                raise DiffCPSError(
                    f"Experiment {self.store.uri} was written by another version of "
                    f"diffcps-ray (experiment.json format {version}, this one reads "
                    f"{FORMAT_VERSION}); resume it with that version or start a new --name."
                )
        else:
            behaviour = {
                task: entry.behaviour_score
                for task, entry in suite.tasks.items()
                if entry.behaviour_score is not None
            }
            self.manifest = new_manifest(
                suite.name, opts.budget, command, asdict(opts), behaviour
            )

    # -- experiment.json --

    def save(self) -> None:
        self.store.write_json(self.manifest)
        self._upload_journals()

    def mark_interrupted(self) -> None:
        """Say in experiment.json that the sweep stopped unfinished (after a signal)."""
        if self.manifest.get("status") != "done":
            self.manifest["status"] = "interrupted"
            self.save()

    def resume_command(self) -> str:
        return (f"python -m diffcps_ray.tune --storage {self.opts.storage} "
                f"--name {self.opts.name} --resume")

    # -- the run --

    def run(self) -> dict[str, Any]:
        """Every task's search and confirmation (or the ablation grid); returns the manifest.

        Ray must be initialised by the caller. Raises SweepInterruptedError when Tune stopped
        before every trial finished (Ctrl-C, SIGTERM): the state is saved for --resume.
        """
        from diffcps_ray.tune.reporting import tune_env

        for key, value in tune_env().items():
            os.environ.setdefault(key, value)
        # Tune lets a custom searcher have one pending trial at a time, so a cluster would
        # fill one placement group after another; the plan's own limit bounds live trials.
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(MAX_PENDING_TRIALS))
        if self.manifest.get("status") == "done":
            self.log(f"[sweep] {self.store.uri} finished earlier; nothing to run.")
            return self.manifest
        self.manifest["options"] = asdict(self.opts)
        self.manifest["status"] = "running"
        self._record_phases()
        self._download_journals()
        self.save()
        trainable = self._trainable_with_resources()
        with sweep_plan.active(self):
            if restorable(self.store):
                self.log(f"[sweep] resuming {self.store.phase_uri(SWEEP_DIR)}")
                tuner = restore(self.store, SWEEP_DIR, trainable)
            else:
                tuner = self._new_tuner(trainable)
            self._note_gpu_wait()
            results = tuner.fit()
            if self.plan is None:
                raise DiffCPSError(f"{self.store.phase_uri(SWEEP_DIR)} holds no sweep plan.")
            details = result_details(results, self.store)
        rows = [record_row(record) for record in self.plan.trials.values()]
        for row in rows:
            row.update(details.get(row["trial_id"], {}))
        self.manifest["trials"] = rows
        if not self.plan.finished():
            self.mark_interrupted()
            raise SweepInterruptedError(
                f"The sweep stopped before every trial finished; continue it with: "
                f"{self.resume_command()}"
            )
        self.manifest["status"] = "done"
        for phase in ("search", "confirm", "ablation"):
            if phase in self.manifest["phases"]:
                self.manifest["phases"][phase]["status"] = "done"
        self.save()
        if self.export_after and not self.suite.is_ablation:
            self.export_policies()
        return self.manifest

    def export_policies(self) -> None:
        """Each confirmation run's best and final policy under <experiment>/policies/."""
        from diffcps_ray.policy.export import export_sweep_policies

        written = export_sweep_policies(self.store.uri, self.manifest, log=self.log)
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

        from diffcps_ray.tune.plan import PlanStopper, SweepScheduler, SweepSearcher
        from diffcps_ray.tune.reporting import make_reporter

        plan = self.build_plan()
        self.plan = plan
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
                trial_dirname_creator=trial_dirname,
                trial_name_creator=trial_name,
                reuse_actors=True,  # saves a process start and imports per trial
            ),
            run_config=tune.RunConfig(
                name=SWEEP_DIR,
                storage_path=self.store.uri,
                stop=PlanStopper(),
                checkpoint_config=checkpoint_config(),
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                progress_reporter=make_reporter(self.store.phase_uri(SWEEP_DIR),
                                                plan.total_trials),
                callbacks=[TrialEvents(), *(self.callbacks or [])],
                verbose=1,
            ),
        )

    def build_plan(self) -> SweepPlan:
        from diffcps_ray.tune.plan import SearchSpec

        tasks = []
        for task in self.tasks:
            if self.suite.is_ablation:
                points = self.ablation_points(task)
                tasks.append(TaskPlan(task.name, None, points=points,
                                      expected_points=len(points)))
                continue
            spec = SearchSpec(
                distributions={k: (r.low, r.high) for k, r in task.search.items()},
                base_config={
                    "phase": "search",
                    "task": task.name,
                    "seed": SEARCH_SEED,
                    "settings": dict(task.overrides),
                    "run": run_section(self.opts, self.budget.search, task),
                },
                num_samples=self.opts.num_samples,
                grace_period=self.budget.grace_period,
                reduction_factor=self.budget.reduction_factor,
            )
            tasks.append(TaskPlan(task.name, spec, expected_points=self.opts.seeds))
        return SweepPlan(tasks, search_iterations=self.budget.search.iterations,
                         run_iterations=self.budget.confirm.iterations)

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
        phases = self.manifest["phases"]
        if self.suite.is_ablation:
            phases.setdefault("ablation", {
                "dir": SWEEP_DIR, "status": "running", "budget": asdict(self.budget.confirm),
                "seeds": list(range(1, self.opts.seeds + 1)), "grid": self.suite.grid,
                "tasks": {task.name: "running" for task in self.tasks},
            })
            return
        search = phases.setdefault("search", {"metric": METRIC, "mode": MODE,
                                              "budget": asdict(self.budget.search),
                                              "tasks": {}})
        for task in self.tasks:
            location = self.study_location(task.name)
            search["tasks"].setdefault(task.name, {
                "dir": SWEEP_DIR,
                "status": "running",
                "paper": {k: r.paper for k, r in task.search.items()},
                "ranges": {k: [r.low, r.high] for k, r in task.search.items()},
                "optuna_storage": self._recorded_storage(location),
                "study_name": location.study_name,
            })
        phases.setdefault("confirm", {
            "dir": SWEEP_DIR, "status": "running", "budget": asdict(self.budget.confirm),
            "seeds": list(range(1, self.opts.seeds + 1)),
            "tasks": {task.name: "waiting for its search" for task in self.tasks},
        })

    # -- SweepContext (called by the plan while Tune runs) --

    def attach(self, plan: SweepPlan) -> None:
        """The plan Tune runs (a restored Tuner brings its own copy)."""
        self.plan = plan

    def trial_limit(self) -> int:
        now = time.monotonic()
        if self._resources is None or now - self._resources[0] > RESOURCES_REFRESH_S:
            import ray

            self._resources = (now, dict(ray.cluster_resources()))
            self._note_gpu_wait()
        return concurrency(self.opts, self._resources[1])

    def trial_resources(self) -> dict[str, float]:
        return trial_resources(self.opts)

    def study(self, task: str) -> Any:
        if task not in self._studies:
            entry = self.suite.tasks[task]
            first = {k: r.first_point for k, r in entry.search.items()}
            self._studies[task] = open_study(
                self.study_location(task), sampler_seed(self.suite.name, task),
                self.opts.num_samples, first,
            )
        return self._studies[task]

    def search_done(self, task: str, trials: list[TrialRecord]) -> list[dict[str, Any]]:
        rows = [record_row(record) for record in trials]
        replace_trials(self.manifest, "search", task, rows)
        entry_spec = self.suite.tasks[task]
        best, kept_paper = keep_paper_within_noise(pick_best(rows), rows,
                                                   entry_spec.paper_point)
        entry = self.manifest["phases"]["search"]["tasks"][task]
        entry["status"] = "done"
        entry["selection"] = kept_paper or "the top-scoring trial"
        entry["best"] = (None if best is None else
                         {k: best[k] for k in ("trial_id", "path", "kappa", "lambda_clip",
                                               "score")})
        entry["best_raw"] = None
        raw = None
        if best is not None:
            config = next(r.config for r in trials if r.trial_id == best["trial_id"])
            raw = {"kappa": config["kappa"], "lambda_clip": config["lambda_clip"]}
            entry["best_raw"] = raw
        errors = sum(r["status"] == "ERROR" for r in rows)
        chosen = (
            "no successful trial" if best is None
            else f"confirming kappa={best['kappa']:g}, lambda_clip={best['lambda_clip']:g} "
                 f"(trial {best['trial_id']}, final score {best['score']:.1f})"
        )
        self.log(f"[search] {task}: {chosen}" + (f"; {kept_paper}" if kept_paper else "")
                 + (f" ({errors} trial(s) failed)" if errors else ""))
        confirm = self.manifest["phases"]["confirm"]
        confirm["tasks"][task] = "running" if raw else "skipped: no successful search trial"
        self.save()
        return [] if raw is None else self.confirm_points(self.suite.tasks[task], raw)

    def task_done(self, task: str, trials: list[TrialRecord]) -> None:
        phase = "ablation" if self.suite.is_ablation else "confirm"
        rows = [record_row(record) for record in trials]
        replace_trials(self.manifest, phase, task, rows)
        self.manifest["phases"][phase]["tasks"][task] = "done"
        self.save()
        scores = [row["score"] for row in rows if row["score"] is not None]
        if phase == "confirm" and rows:
            self.log(f"[confirm] {task}: {len(rows)} seed(s) finished, final scores "
                     + ", ".join(f"{score:.1f}" for score in scores))

    # -- points --

    def confirm_points(self, task: TaskEntry, raw: dict[str, float]) -> list[dict[str, Any]]:
        return [
            {
                "phase": "confirm",
                "task": task.name,
                "kappa": raw["kappa"],
                "lambda_clip": raw["lambda_clip"],
                "seed": seed,
                "settings": dict(task.overrides),
                "run": run_section(self.opts, self.budget.confirm, task),
            }
            for seed in range(1, self.opts.seeds + 1)
        ]

    def ablation_points(self, task: TaskEntry) -> list[dict[str, Any]]:
        points = []
        ((key, values),) = self.suite.grid.items()
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
                run = run_section(self.opts, self.budget.confirm, task)
                run["lambda_clip_zero_below"] = 0.0  # grid values are taken literally
                points.append({
                    "phase": "ablation", "task": task.name, "kappa": kappa,
                    "lambda_clip": lambda_clip, "seed": seed, "variant": {key: value},
                    "settings": settings, "run": run,
                })
        return points

    # -- Optuna studies --

    def study_location(self, task: str) -> StudyLocation:
        name = f"{self.opts.name}/{task}"
        if self.opts.optuna_storage:
            return StudyLocation(name, url=self.opts.optuna_storage)
        return StudyLocation(name, journal=os.path.join(self._journal_dir(), f"{task}.journal"))

    def _recorded_storage(self, location: StudyLocation) -> str:
        if location.url:
            return location.url
        return posixpath.join(JOURNAL_DIR, os.path.basename(location.journal))

    def _journal_dir(self) -> str:
        """Journals live in the experiment directory; for a URI store, in a local mirror
        that every save uploads (Optuna's journal needs a file system with locks)."""
        if "://" not in self.store.uri:
            return os.path.join(self.store.uri, JOURNAL_DIR)
        import hashlib

        digest = hashlib.sha256(self.store.uri.encode()).hexdigest()[:16]
        return os.path.join(os.path.expanduser("~/.cache/diffcps-ray/optuna"), digest)

    def _journal_pairs(self) -> list[tuple[str, str]]:
        if "://" not in self.store.uri or self.opts.optuna_storage:
            return []
        local = self._journal_dir()
        return [(os.path.join(local, f"{task.name}.journal"),
                 posixpath.join(self.store.fs_path, JOURNAL_DIR, f"{task.name}.journal"))
                for task in self.tasks]

    def _upload_journals(self) -> None:
        import pyarrow.fs

        for local, remote in self._journal_pairs():
            if os.path.isfile(local):
                self.store.filesystem.create_dir(posixpath.dirname(remote), recursive=True)
                pyarrow.fs.copy_files(local, remote, source_filesystem=pyarrow.fs.LocalFileSystem(),
                                      destination_filesystem=self.store.filesystem)

    def _download_journals(self) -> None:
        import pyarrow.fs

        for local, remote in self._journal_pairs():
            info = self.store.filesystem.get_file_info(remote)
            if info.type == pyarrow.fs.FileType.File:
                os.makedirs(os.path.dirname(local), exist_ok=True)
                if os.path.exists(local):
                    shutil.copyfile(local, local + ".previous")
                pyarrow.fs.copy_files(remote, local, source_filesystem=self.store.filesystem,
                                      destination_filesystem=pyarrow.fs.LocalFileSystem())

    # -- waiting for GPUs --

    @property
    def waiting_for_gpus(self) -> bool:
        return self._waiting_for_gpus

    def note_gpus_arrived(self) -> None:
        """A trial started while the sweep waited for GPUs: they have come."""
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
        elif not waiting and self._waiting_for_gpus:
            self.note_gpus_arrived()
        self._waiting_for_gpus = waiting


# --- the closing summary -------------------------------------------------------------------


def summarise(manifest: dict[str, Any], suite: Suite, episodes: int) -> list[str]:
    """Lines per task: final score mean +- standard error over seeds vs the behaviour.

    The standard error over seeds includes the evaluation noise; the evaluation's own
    noise (episode spread / sqrt(episodes), per seed) is stated beside it.
    """
    lines = []
    phase = "ablation" if suite.is_ablation else "confirm"
    by_key: dict[tuple[str, str], list[dict]] = {}
    for row in manifest["trials"]:
        if row["phase"] != phase:
            continue
        variant = ",".join(f"{k}={v}" for k, v in (row.get("variant") or {}).items())
        by_key.setdefault((row["task"], variant), []).append(row)
    for (task, variant), rows in by_key.items():
        ok = [r for r in rows if r["score"] is not None and r["status"] != "ERROR"]
        failed = len(rows) - len(ok)
        label = f"{task}{' ' + variant if variant else ''}"
        if not ok:
            lines.append(f"{label}: every {phase} trial failed.")
            continue
        scores = [r["score"] for r in ok]
        eval_noise = [se for r in ok if (se := _evaluation_se(r)) is not None]
        entry = suite.tasks.get(task)
        behaviour = None if entry is None or variant else entry.behaviour_score
        line = (
            f"{label}: final normalised score "
            f"{score_summary(scores, eval_noise, episodes, behaviour)}"
        )
        best = [r["best_score"] for r in ok if r.get("best_score") is not None]
        if best:
            line += f"; best-of-run {statistics.fmean(best):.1f}"
        if failed:
            line += f"; {failed} trial(s) failed"
        lines.append(line + ".")
    return lines


def elapsed(start: float) -> str:
    seconds = time.monotonic() - start
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
