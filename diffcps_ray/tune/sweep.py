"""The two phases of a sweep: search (per task) and confirmation (best config x seeds).

Search: per task, OptunaSearch (seeded; the paper's kappa and lambda_clip evaluated first)
proposes kappa and lambda_clip, ASHA stops weak trials early on the evaluation score. Each
task is its own Tune experiment (search-<task>/) because each task has its own search space
and its own Optuna study.

Confirmation: the best search config of every task x N seeds, one Tune experiment
(confirm/) whose trials are listed up front (points.FixedPoints), so every task's
seeds can run at once on a cluster. Ablations run the same way (ablation/) with the grid's
values in place of the searched ones.

Fault tolerance: checkpoints every iteration and FailureConfig retries (a trial whose
worker dies resumes from its last checkpoint); ``--resume`` restores an interrupted phase
with Tuner.restore, which restores the OptunaSearch and ASHA state (ray #30861, fixed by
ray PR #30893); experiment.json records which phases finished.
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffcps_ray.errors import DiffCPSError
from diffcps_ray.results import metric_value, score_summary
from diffcps_ray.tune.manifest import ExperimentStore, new_manifest, replace_trials
from diffcps_ray.tune.suites import METRIC, Budget, PhaseBudget, Suite, TaskEntry

MODE = "max"
SEARCH_SEED = 0  # every search trial trains with this seed; confirmation uses 1..N
MAX_FAILURES = 2  # retries per trial (worker death, node loss) from its last checkpoint
CHECKPOINTS_KEPT = 2
# rllib-notes.md: about 2.3-2.6 GB of RAM per DiffCPS Algorithm across Ray's processes.
MEMORY_PER_TRIAL = 2.6e9


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
    loggers: list[str] = field(default_factory=list)  # --logger: tensorboard, wandb, mlflow


# --- trial naming and reporting ------------------------------------------------------------


def trial_dirname(trial: Any) -> str:
    """Short trial directory names (Tune's default embeds the whole config)."""
    return f"{trial.config.get('phase', 'trial')}_{trial.trial_id}"


def trial_name(trial: Any) -> str:
    return f"{trial.config.get('task', '')}_{trial.trial_id}"


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


def search_space(opts: SweepOptions, budget: Budget, task: TaskEntry) -> dict[str, Any]:
    from ray import tune

    ranges = task.search
    return {
        "phase": "search",
        "task": task.name,
        "kappa": tune.loguniform(ranges["kappa"].low, ranges["kappa"].high),
        "lambda_clip": tune.loguniform(ranges["lambda_clip"].low, ranges["lambda_clip"].high),
        "seed": SEARCH_SEED,
        "settings": dict(task.overrides),
        "run": run_section(opts, budget.search, task),
    }


def searcher_seed(suite: str, task: str) -> int:
    """A stable per-task seed for Optuna's sampler (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{suite}/{task}".encode()).digest()[:4], "little")


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
    # outside the trials' placement groups (with no spare CPU they wait forever).
    num_cpus = (os.cpu_count() or 1) + math.ceil(opts.data_cpus)
    ray.init(num_cpus=num_cpus, runtime_env=runtime_env, **ray_init_settings(None, num_cpus))
    return True


def concurrency(opts: SweepOptions) -> int:
    """How many trials may run at once: the CPUs (and GPUs) left after Ray Data's share."""
    import ray

    resources = ray.cluster_resources()
    if opts.gpus_per_trial > 0 and float(resources.get("GPU", 0)) < opts.gpus_per_trial:
        # Trials would wait forever for a GPU that never comes.
        raise DiffCPSError(
            f"--gpus-per-learner is {opts.gpus_per_trial} but the Ray cluster has "
            f"{resources.get('GPU', 0):g} GPUs."
        )
    if opts.max_concurrent:
        return opts.max_concurrent
    cpus = float(resources.get("CPU", 1)) - opts.data_cpus
    limit = max(1, int(cpus // max(opts.cpus_per_trial, 1e-9)))
    if opts.gpus_per_trial > 0:
        gpus = float(resources.get("GPU", 0))
        limit = min(limit, max(1, int(gpus // opts.gpus_per_trial + 1e-9)))
    if resources.get("memory"):
        # Many cores and little RAM: trials would be killed by Ray's memory monitor.
        limit = min(limit, max(1, int(float(resources["memory"]) // MEMORY_PER_TRIAL)))
    return limit


def with_resources(trainable: Any, opts: SweepOptions) -> Any:
    from ray import tune

    return tune.with_resources(
        trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}
    )


def run_config(
    name: str,
    store: ExperimentStore,
    phase: PhaseBudget,
    reporter: Any,
    callbacks: list[Any] | None = None,
) -> Any:
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=store.uri,
        stop={"training_iteration": phase.iterations},
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_frequency=1, num_to_keep=CHECKPOINTS_KEPT, checkpoint_at_end=True
        ),
        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
        progress_reporter=reporter,
        callbacks=callbacks,
        verbose=1,
    )


def restorable(store: ExperimentStore, phase_dir: str) -> bool:
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


# --- results -> manifest rows --------------------------------------------------------------


def trial_rows(results: Any, store: ExperimentStore, max_iterations: int) -> list[dict]:
    """One manifest row per trial of a finished (or restored) Tune experiment.

    A trial's identity and config are read from its own directory (its name and
    params.json): Result.config is derived from the last reported metrics, which a trial
    that failed before reporting does not have (with reused actors it may even show
    another trial's).
    """
    rows = []
    for result in results:
        trial_id = Path(result.path).name.split("_", 1)[-1]
        metrics = result.metrics or {}
        if metrics.get("trial_id") not in (None, trial_id):
            metrics = {}
        config = read_params(store, result.path) or result.config or {}
        iterations = int(metrics.get("training_iteration", 0) or 0)
        if result.error is not None:
            status = "ERROR"
        elif iterations >= max_iterations:
            status = "TERMINATED"
        else:
            status = "STOPPED_EARLY"
        rows.append(
            {
                "phase": config.get("phase"),
                "task": config.get("task"),
                "trial_id": trial_id,
                "path": store.relative(result.path),
                "kappa": config.get("kappa"),
                "lambda_clip": effective_lambda_clip(config),
                "seed": config.get("seed"),
                "status": status,
                "iterations": iterations,
                "score": _number(metric_value(metrics, METRIC)),
                "best_score": _number(metric_value(metrics, "evaluation/best_normalized_score")),
                # Episode-to-episode spread of the last evaluation and its episode count.
                "score_std": _number(metric_value(metrics, "evaluation/normalized_score_std")),
                "eval_episodes": _number(metric_value(metrics, "evaluation/num_episodes")),
                "error": None if result.error is None else _one_line(result.error),
                **({"variant": config["variant"]} if "variant" in config else {}),
            }
        )
    return rows


def read_params(store: ExperimentStore, trial_path: str) -> dict[str, Any] | None:
    """A trial's params.json (Tune writes it when the trial starts), or None."""
    import json

    try:
        with store.filesystem.open_input_stream(posixpath.join(trial_path, "params.json")) as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError):
        return None


def effective_lambda_clip(config: dict[str, Any]) -> float | None:
    """The lambda_clip a trial ran with (None for a config without one)."""
    from diffcps_ray.tune.bridge import effective_lambda_clip as effective

    return None if config.get("lambda_clip") is None else effective(config)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    # Ray wraps the trial's exception; its last line holds our sentence.
    for line in reversed(text):
        if line.strip():
            return line.strip()[:500]
    return type(error).__name__


def interrupted(results: Any, expected: int) -> bool:
    """Whether Tune returned early (Ctrl-C / SIGUSR1): fewer trials, or some unfinished.

    Tuner.fit returns normally after a stop signal, with the experiment saved for restore.
    """
    analysis = getattr(results, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None)
    if trials is None:
        return len(results) < expected
    finished = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
    return len(finished) < expected


SELECTION_MARGIN_SE = 2.0
"""A searched config replaces the paper's only if it scores this many standard errors of
the difference above it: with 10 evaluation episodes (+-12 points, pointmaze-notes.md),
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
    """Runs (or resumes) the phases of one experiment and keeps experiment.json current."""

    def __init__(
        self,
        suite: Suite,
        opts: SweepOptions,
        command: str,
        resume: bool,
        trainable: Any = None,
        log=print,
        callbacks: list[Any] | None = None,
    ) -> None:
        self.suite = suite
        self.opts = opts
        self.budget = suite.budget(opts.budget)
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
        if self.store.exists():
            if not resume:
                raise DiffCPSError(
                    f"Experiment {self.store.uri} already exists: pass --resume to continue "
                    f"it, or choose another --name."
                )
            self.manifest = self.store.read_json()
        else:
            behaviour = {
                task: entry.behaviour_score
                for task, entry in suite.tasks.items()
                if entry.behaviour_score is not None
            }
            self.manifest = new_manifest(
                suite.name, opts.budget, command, asdict(opts), behaviour
            )

    def save(self) -> None:
        self.store.write_json(self.manifest)

    # -- phases --

    def run(self) -> dict[str, Any]:
        """All phases; returns the manifest. Ray must be initialised by the caller."""
        from diffcps_ray.tune.reporting import tune_env

        for key, value in tune_env().items():
            os.environ.setdefault(key, value)
        self.save()
        self.concurrent = concurrency(self.opts)
        if self.suite.is_ablation:
            self.run_grid_phase("ablation", self.ablation_points())
        else:
            for task in self.tasks:
                self.search(task)
            self.run_grid_phase("confirm", self.confirm_points())
        return self.manifest

    def search(self, task: TaskEntry) -> None:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        from diffcps_ray.tune.reporting import make_reporter

        phases = self.manifest["phases"].setdefault("search", {"metric": METRIC, "mode": MODE,
                                                              "budget": asdict(self.budget.search),
                                                              "tasks": {}})
        state = phases["tasks"].get(task.name, {})
        if state.get("status") == "done":
            self.log(f"[search] {task.name}: finished earlier, skipping.")
            return
        phase_dir = f"search-{task.name}"
        trainable = with_resources(self.trainable, self.opts)
        if state and restorable(self.store, phase_dir):
            self.log(f"[search] {task.name}: resuming {self.store.phase_uri(phase_dir)}")
            tuner = restore(self.store, phase_dir, trainable)
        else:
            first = {k: r.first_point for k, r in task.search.items()}
            paper = ", ".join(
                f"{k}={value:g}"
                + (f" (sampled as the range's floor {first[k]:g})" if value != first[k] else "")
                for k, value in task.paper_point.items()
            )
            self.log(
                f"[search] {task.name}: {self.opts.num_samples} trials x up to "
                f"{self.budget.search.gradient_steps:,} steps, the paper's config first: {paper}"
            )
            searcher = OptunaSearch(
                points_to_evaluate=[first], seed=searcher_seed(self.suite.name, task.name)
            )
            scheduler = ASHAScheduler(
                time_attr="training_iteration",
                max_t=self.budget.search.iterations,
                grace_period=self.budget.grace_period,
                reduction_factor=self.budget.reduction_factor,
            )
            tuner = tune.Tuner(
                trainable,
                param_space=search_space(self.opts, self.budget, task),
                tune_config=tune.TuneConfig(
                    metric=METRIC,
                    mode=MODE,
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=self.opts.num_samples,
                    max_concurrent_trials=self.concurrent,
                    trial_dirname_creator=trial_dirname,
                    trial_name_creator=trial_name,
                    reuse_actors=True,  # saves a process start and imports per trial
                ),
                run_config=run_config(
                    phase_dir, self.store, self.budget.search,
                    make_reporter(self.store.phase_uri(phase_dir), self.opts.num_samples),
                    self.callbacks,
                ),
            )
        phases["tasks"][task.name] = {
            "dir": phase_dir,
            "status": "running",
            "paper": {k: r.paper for k, r in task.search.items()},
            "ranges": {k: [r.low, r.high] for k, r in task.search.items()},
        }
        self.save()
        results = tuner.fit()
        self.stop_if_interrupted(results, self.opts.num_samples)
        rows = trial_rows(results, self.store, self.budget.search.iterations)
        replace_trials(self.manifest, "search", task.name, rows)
        best, kept_paper = keep_paper_within_noise(pick_best(rows), rows, task.paper_point)
        entry = phases["tasks"][task.name]
        entry["status"] = "done"
        entry["selection"] = kept_paper or "the top-scoring trial"
        entry["best"] = (
            None
            if best is None
            else {k: best[k] for k in ("trial_id", "path", "kappa", "lambda_clip", "score")}
        )
        entry["best_raw"] = None
        if best is not None:
            path = next(r.path for r in results if self.store.relative(r.path) == best["path"])
            raw = read_params(self.store, path) or {}
            entry["best_raw"] = {"kappa": raw["kappa"], "lambda_clip": raw["lambda_clip"]}
        self.save()
        errors = sum(r["status"] == "ERROR" for r in rows)
        chosen = (
            "no successful trial" if best is None
            else f"confirming kappa={best['kappa']:g}, lambda_clip={best['lambda_clip']:g} "
                 f"(trial {best['trial_id']}, final score {best['score']:.1f})"
        )
        self.log(
            f"[search] {task.name}: {chosen}"
            + (f"; {kept_paper}" if kept_paper else "")
            + (f" ({errors} trial(s) failed)" if errors else "")
        )

    def stop_if_interrupted(self, results: Any, expected: int) -> None:
        if interrupted(results, expected):
            self.log(
                f"Interrupted; continue with: python -m diffcps_ray.tune --storage "
                f"{self.opts.storage} --name {self.opts.name} --resume"
            )
            raise KeyboardInterrupt

    def confirm_points(self) -> list[dict[str, Any]]:
        points = []
        search = self.manifest["phases"].get("search", {}).get("tasks", {})
        for task in self.tasks:
            raw = (search.get(task.name) or {}).get("best_raw")
            if raw is None:
                self.log(f"[confirm] {task.name}: no successful search trial, skipping.")
                continue
            for seed in range(1, self.opts.seeds + 1):
                points.append(
                    {
                        "phase": "confirm",
                        "task": task.name,
                        "kappa": raw["kappa"],
                        "lambda_clip": raw["lambda_clip"],
                        "seed": seed,
                        "settings": dict(task.overrides),
                        "run": run_section(self.opts, self.budget.confirm, task),
                    }
                )
        return points

    def ablation_points(self) -> list[dict[str, Any]]:
        points = []
        ((key, values),) = self.suite.grid.items()
        for task in self.tasks:
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
                    points.append(
                        {
                            "phase": "ablation",
                            "task": task.name,
                            "kappa": kappa,
                            "lambda_clip": lambda_clip,
                            "seed": seed,
                            "variant": {key: value},
                            "settings": settings,
                            "run": run,
                        }
                    )
        return points

    def run_grid_phase(self, phase: str, points: list[dict[str, Any]]) -> None:
        from ray import tune

        from diffcps_ray.tune.points import FixedPoints
        from diffcps_ray.tune.reporting import make_reporter

        state = self.manifest["phases"].get(phase, {})
        if state.get("status") == "done":
            self.log(f"[{phase}] finished earlier, skipping.")
            return
        if not points:
            raise DiffCPSError(f"Nothing to run in the {phase} phase: every search failed.")
        phase_dir = phase
        trainable = with_resources(self.trainable, self.opts)
        if state and restorable(self.store, phase_dir):
            self.log(f"[{phase}] resuming {self.store.phase_uri(phase_dir)}")
            tuner = restore(self.store, phase_dir, trainable)
        else:
            self.log(
                f"[{phase}] {len(points)} trials x {self.budget.confirm.gradient_steps:,} steps, "
                f"{self.budget.confirm.eval_episodes} evaluation episodes"
            )
            tuner = tune.Tuner(
                trainable,
                param_space={},
                tune_config=tune.TuneConfig(
                    metric=METRIC,
                    mode=MODE,
                    search_alg=FixedPoints(points),
                    num_samples=len(points),
                    max_concurrent_trials=self.concurrent,
                    trial_dirname_creator=trial_dirname,
                    trial_name_creator=trial_name,
                    reuse_actors=True,  # saves a process start and imports per trial
                ),
                run_config=run_config(
                    phase_dir, self.store, self.budget.confirm,
                    make_reporter(self.store.phase_uri(phase_dir), len(points)), self.callbacks,
                ),
            )
        self.manifest["phases"][phase] = {
            "dir": phase_dir,
            "status": "running",
            "budget": asdict(self.budget.confirm),
            "seeds": list(range(1, self.opts.seeds + 1)),
            **({"grid": self.suite.grid} if phase == "ablation" else {}),
        }
        self.save()
        results = tuner.fit()
        self.stop_if_interrupted(results, len(points))
        rows = trial_rows(results, self.store, self.budget.confirm.iterations)
        replace_trials(self.manifest, phase, None, rows)
        self.manifest["phases"][phase]["status"] = "done"
        self.save()


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
