"""How well one sweep fills a cluster: the real sweep code on a simulated cluster (issue 11).

    python bench/cluster_sweep.py --suite antmaze --budget paper --slots 32 [--scale 100]
        [--seconds-per-iteration 3] [--keep DIR]

What runs: ``diffcps_ray.tune.sweep.Sweep`` as the command-line tool runs it (its Optuna
searchers, ASHA schedulers, phases and experiment.json), with two things simulated:

- the cluster: Ray starts on this machine with ``--slots`` logical GPUs (and as many logical
  CPUs, plus the sweep's Ray Data share), and every trial asks for one GPU and one CPU, so
  that ``slots`` trials can run at once;
- the trainable: ``StandInTrial`` sleeps ``--seconds-per-iteration`` per training iteration
  and reports a noisy learning curve per task under the metric the sweep optimises
  (``suites.METRIC``), so that Optuna and ASHA have something to rank. It saves and
  restores checkpoints like the real trainable. It exists only for this benchmark and its
  test; the command-line tool never uses it.

Scaling: the budget's iteration counts are divided by ``--scale``: each phase's iterations
and ASHA's grace period (which must divide exactly, so the rung ratios stay the same), and
evaluation intervals (at least 1). ASHA's reduction factor, the trial counts and the seeds
are the budget's. The antmaze paper budget at ``--scale 100``: search trials of at most 10
iterations with rungs at 2 and 6 (paper: 200 and 600 of 1000), confirmation trials of 10.

What it measures (times from a Tune callback in the driver: on_trial_start to
on_trial_complete / on_trial_error):

- makespan_s: wall time of ``Sweep.run()`` (every phase, Tune's set-up included);
- trial_iterations: training iterations of all trials together (experiment.json's rows);
- work_bound_s = trial_iterations x seconds_per_iteration / slots: the time the work takes
  with every slot always busy;
- chain_bound_s: the longest chain of work that cannot run in parallel. Per task: its search
  run with unlimited slots takes as long as its longest search trial (every trial could
  start at once; ASHA only ever shortens trials), and its confirmation can start only after
  that, lasting its longest confirmation trial. chain = max over tasks of (the task's
  longest search trial + its longest confirmation trial) in iterations, x
  seconds_per_iteration;
- bound_s = max(work_bound_s, chain_bound_s), makespan_over_bound = makespan_s / bound_s;
- utilization = busy slot-seconds / (slots x makespan_s), a slot being busy while a trial
  runs on it (from its start to its stop event);
- also: the Tune experiments the sweep ran (one per Tuner) and, for each, the wait from
  its start to its first running trial (trial actors starting: one process each, with
  Ray and Tune imported, much slower on a busy 2-core machine than on a cluster's nodes);
  work_utilization (trial_iterations x seconds_per_iteration / (slots x makespan_s):
  the share of slot time spent in the iterations themselves), the measured seconds per
  iteration inside trials (sleep + reporting + checkpointing), the most trials that ran at
  once, and the load average.

The last line printed is one JSON object: {"utilization": u, "makespan_over_bound": r,
"slots": n, "trials": m, ...}.

On a 2-core machine every trial actor costs a process start and Ray/Tune imports, which a
real cluster pays on many nodes at once; keep ``--seconds-per-iteration`` a few seconds so
that such costs stay small beside a trial's length.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ray import tune  # noqa: E402

from diffcps_ray.errors import ConfigError  # noqa: E402
from diffcps_ray.tune.suites import METRIC, Budget, PhaseBudget, Suite  # noqa: E402

NOISE_STD = 8.0  # normalised points: about a 10-episode evaluation's noise
# The sweep ranks trials by METRIC ("evaluation/normalized_score"), nested as the real
# trainable reports it; the rest of the group is what experiment.json's rows read.
EVALUATION, SCORE = METRIC.split("/")
STATE_FILE = "stand_in.json"


# --- the stand-in trainable ----------------------------------------------------------------


def _unit(*parts: Any) -> float:
    """A stable number in [0, 1) from ``parts`` (Python's hash() is salted per process)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def final_score(task: str, kappa: float, lambda_clip: float) -> float:
    """Where a config's learning curve ends: a per-task level, lower away from its best config.

    Each task has its own level (30-90) and its own best kappa and lambda_clip, so that
    tasks' scores differ and the searches have something to find.
    """
    level = 30.0 + 60.0 * _unit("level", task)
    best_kappa = 10 ** (-2.0 + 2.0 * _unit("kappa", task))
    best_clip = 10 ** (-1.5 + 1.5 * _unit("lambda_clip", task))
    distance = math.log10(max(kappa, 1e-12) / best_kappa) ** 2 + math.log10(
        max(lambda_clip, 1e-12) / best_clip
    ) ** 2
    return level * math.exp(-distance / 2.0)


class StandInTrial(tune.Trainable):
    """Sleeps per iteration; reports final_score's curve plus evaluation-like noise.

    Reads what the sweep puts into a trial's config: task, phase, kappa, lambda_clip, seed
    and run (iterations, steps_per_iteration, eval_interval, eval_episodes). The noise of
    iteration i is fixed by the config and i, so a trial restored from a checkpoint reports
    what it would have reported without the interruption.
    """

    seconds_per_iteration = 1.0

    def setup(self, config: dict[str, Any]) -> None:
        run = config.get("run", {})
        self.task = str(config.get("task"))
        self.kappa = float(config.get("kappa") or 0.0)
        self.lambda_clip = float(config.get("lambda_clip") or 0.0)
        self.seed = int(config.get("seed") or 0)
        self.iterations = int(run.get("iterations", 1))
        self.steps_per_iteration = int(run.get("steps_per_iteration", 1))
        self.eval_interval = int(run.get("eval_interval", 1))
        self.eval_episodes = int(run.get("eval_episodes", 1))
        self.target = final_score(self.task, self.kappa, self.lambda_clip)
        self.last_score = math.nan
        self.best_score = math.nan

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self.setup(new_config)
        return True

    def step(self) -> dict[str, Any]:
        started = time.time()
        time.sleep(self.seconds_per_iteration)
        iteration = self.iteration + 1
        if iteration % self.eval_interval == 0 or iteration == self.iterations:
            progress = 1.0 - math.exp(-3.0 * iteration / max(self.iterations, 1))
            noise = NOISE_STD * math.sqrt(-2.0 * math.log(1.0 - _unit(
                "noise", self.task, self.kappa, self.lambda_clip, self.seed, iteration
            ))) * math.cos(2.0 * math.pi * _unit("angle", self.seed, iteration))
            self.last_score = self.target * progress + noise
            self.best_score = (
                self.last_score if math.isnan(self.best_score)
                else max(self.best_score, self.last_score)
            )
        return {
            EVALUATION: {
                SCORE: self.last_score,
                "best_normalized_score": self.best_score,
                "normalized_score_std": NOISE_STD * math.sqrt(self.eval_episodes),
                "num_episodes": self.eval_episodes,
            },
            "num_gradient_steps": iteration * self.steps_per_iteration,
            "bench_step_s": time.time() - started,
        }

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        state = {"last_score": self.last_score, "best_score": self.best_score}
        Path(checkpoint_dir, STATE_FILE).write_text(json.dumps(state))

    def load_checkpoint(self, checkpoint: str | dict | None) -> None:
        assert isinstance(checkpoint, str)
        state = json.loads(Path(checkpoint, STATE_FILE).read_text())
        self.last_score = state["last_score"]
        self.best_score = state["best_score"]


def stand_in(seconds_per_iteration: float) -> type[StandInTrial]:
    return type("StandInTrial", (StandInTrial,), {"seconds_per_iteration": seconds_per_iteration})


# --- the timeline ----------------------------------------------------------------------------


class SlotTimeline(tune.Callback):
    """When each trial started and stopped running on a slot (driver-side Tune events).

    Tune calls it from the driver's loop, one event at a time, and pickles it with the
    experiment's state: plain attributes only.
    """

    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.intervals: list[tuple[str, float, float]] = []  # (trial id, start, stop)
        self.labels: dict[str, tuple[str, str]] = {}  # trial id -> (task, phase)
        self.trials: set[str] = set()
        self.experiments: list[list[float]] = []  # per Tune experiment: [start, end]

    def setup(self, **info: Any) -> None:
        self.experiments.append([time.time(), math.nan])

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.experiments:
            self.experiments[-1][1] = time.time()

    def first_start_waits(self) -> list[float]:
        """Per Tune experiment: seconds from its start to its first trial's start (the
        wait for trial actors, which a fresh Tuner starts anew)."""
        waits = []
        for start, end in self.experiments:
            stop = end if math.isfinite(end) else math.inf
            firsts = [s for _, s, _ in self.intervals if start <= s <= stop]
            if firsts:
                waits.append(min(firsts) - start)
        return waits

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.trials.add(trial.trial_id)
        self.labels[trial.trial_id] = (str(trial.config.get("task")),
                                       str(trial.config.get("phase")))
        self.running.setdefault(trial.trial_id, time.time())

    def _stopped(self, trial: Any) -> None:
        started = self.running.pop(trial.trial_id, None)
        if started is not None:
            self.intervals.append((trial.trial_id, started, time.time()))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stopped(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stopped(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stopped(trial)  # it starts again (on_trial_start) from its checkpoint

    def busy_seconds(self) -> float:
        return sum(stop - start for _, start, stop in self.intervals)

    def peak_running(self) -> int:
        events = sorted(
            [(start, 1) for _, start, _ in self.intervals]
            + [(stop, -1) for _, _, stop in self.intervals],
            key=lambda e: (e[0], e[1]),  # a stop before a start at the same instant
        )
        running = peak = 0
        for _, change in events:
            running += change
            peak = max(peak, running)
        return peak


# --- scaling and measuring -------------------------------------------------------------------


def scaled_suite(suite: Suite, budget_name: str, scale: int) -> Suite:
    """``suite`` with budget ``budget_name``'s iteration counts divided by ``scale``."""
    budget = suite.budget(budget_name)
    if scale < 1:
        raise ConfigError(f"--scale must be at least 1, got {scale}.")
    for what, value in (
        ("grace period", budget.grace_period),
        ("search iterations", budget.search.iterations),
        ("confirmation iterations", budget.confirm.iterations),
    ):
        if value % scale:
            raise ConfigError(
                f"--scale {scale} does not divide the {budget_name} budget's {what} "
                f"({value}); ASHA's rung ratios would change."
            )

    def phase(p: PhaseBudget) -> PhaseBudget:
        iterations = p.iterations // scale
        interval = max(1, p.eval_interval // scale)
        while iterations % interval:
            interval -= 1
        return dataclasses.replace(p, iterations=iterations, eval_interval=interval)

    scaled: Budget = dataclasses.replace(
        budget,
        grace_period=budget.grace_period // scale,
        search=phase(budget.search),
        confirm=phase(budget.confirm),
    )
    return dataclasses.replace(suite, budgets={**suite.budgets, budget_name: scaled})


def measure(
    manifest: dict[str, Any],
    timeline: SlotTimeline,
    slots: int,
    seconds_per_iteration: float,
    makespan_s: float,
) -> dict[str, Any]:
    """The figures of the module docstring from experiment.json and the timeline."""
    rows = manifest["trials"]
    iterations = sum(int(r["iterations"] or 0) for r in rows)
    chains: dict[str, dict[str, int]] = {}
    for row in rows:
        longest = chains.setdefault(row["task"], {"search": 0, "confirm": 0})
        phase = "search" if row["phase"] == "search" else "confirm"
        longest[phase] = max(longest[phase], int(row["iterations"] or 0))
    chain = max((c["search"] + c["confirm"] for c in chains.values()), default=0)
    work_bound = iterations * seconds_per_iteration / slots
    chain_bound = chain * seconds_per_iteration
    bound = max(work_bound, chain_bound)
    busy = timeline.busy_seconds()
    starts = [start for _, start, _ in timeline.intervals]
    stops = [stop for _, _, stop in timeline.intervals]
    return {
        "utilization": round(busy / (slots * makespan_s), 4),
        "makespan_over_bound": round(makespan_s / bound, 4) if bound > 0 else None,
        "slots": slots,
        "trials": len(rows),
        "trials_seen_running": len(timeline.trials),
        "makespan_s": round(makespan_s, 2),
        "bound_s": round(bound, 2),
        "work_bound_s": round(work_bound, 2),
        "chain_bound_s": round(chain_bound, 2),
        "limited_by": "chain" if chain_bound >= work_bound else "work",
        "trial_iterations": iterations,
        "longest_chain_iterations": chain,
        "busy_slot_s": round(busy, 2),
        "work_utilization": round(iterations * seconds_per_iteration / (slots * makespan_s), 4),
        "seconds_per_iteration": seconds_per_iteration,
        "measured_s_per_iteration": round(busy / iterations, 3) if iterations else None,
        "first_start_to_last_stop_s": round(max(stops) - min(starts), 2) if starts else None,
        "peak_running": timeline.peak_running(),
        # Tune experiments (one Tuner each) and their waits for a first running trial.
        "tune_experiments": len(timeline.experiments),
        "first_trial_waits_s": [round(w, 1) for w in timeline.first_start_waits()],
        "trials_by_phase": {
            phase: sum(r["phase"] == phase for r in rows)
            for phase in sorted({r["phase"] for r in rows})
        },
        "errors": sum(r["status"] == "ERROR" for r in rows),
    }


# --- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="antmaze")
    parser.add_argument("--budget", default="paper")
    parser.add_argument("--slots", type=int, default=16, help="logical GPUs, one per trial")
    parser.add_argument("--scale", type=int, default=100,
                        help="divide the budget's iteration counts by this (default 100)")
    parser.add_argument("--seconds-per-iteration", type=float, default=3.0)
    parser.add_argument("--tasks", nargs="+", default=None, help="default: the suite's")
    parser.add_argument("--num-samples", type=int, default=None, help="default: the budget's")
    parser.add_argument("--seeds", type=int, default=None, help="default: the budget's")
    parser.add_argument("--timeline", type=Path, default=None,
                        help="write each trial's [task, phase, start, stop] (seconds from the "
                             "sweep's start) to this JSON file")
    parser.add_argument("--keep", type=Path, default=None,
                        help="leave the experiment here (default: a temporary directory)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    import ray

    from diffcps_ray.tune import sweep as sweep_module
    from diffcps_ray.tune.suites import load_suite
    from diffcps_ray.tune.sweep import Sweep, SweepOptions

    if args.slots < 1:
        raise ConfigError(f"--slots must be at least 1, got {args.slots}.")
    if args.seconds_per_iteration <= 0:
        raise ConfigError(
            f"--seconds-per-iteration must be above 0, got {args.seconds_per_iteration}."
        )
    suite = scaled_suite(load_suite(args.suite), args.budget, args.scale)
    budget = suite.budget(args.budget)
    root = args.keep or Path(tempfile.mkdtemp(prefix="cluster_sweep_"))
    name = f"{args.suite}-{args.budget}-{args.slots}slots-{int(time.time())}"
    data_cpus = 1.0
    opts = SweepOptions(
        suite=suite.name,
        budget=args.budget,
        tasks=[t.name for t in suite.select_tasks(args.tasks)],
        data_root=str(root / "data"),  # the stand-in reads no data
        storage=str(root / "runs"),
        name=name,
        address=None,
        gpus_per_trial=1.0,
        cpus_per_trial=1.0,
        num_samples=args.num_samples or budget.num_samples,
        seeds=args.seeds or budget.seeds,
        max_concurrent=None,  # the sweep's own limit: here the GPU count
        data_cpus=data_cpus,
    )
    memory_per_trial = getattr(sweep_module, "MEMORY_PER_TRIAL", 0)
    print(
        f"{args.suite}/{args.budget} / {args.scale}: {len(opts.tasks)} tasks x "
        f"{opts.num_samples} search trials (<= {budget.search.iterations} iterations, ASHA "
        f"grace {budget.grace_period}, reduction {budget.reduction_factor}), then "
        f"{opts.seeds} seeds x {budget.confirm.iterations} iterations; {args.slots} slots, "
        f"{args.seconds_per_iteration:g} s per iteration",
        flush=True,
    )
    ray.init(
        address="local",  # always a fresh simulated cluster, never a `ray start` one nearby
        num_cpus=args.slots + math.ceil(data_cpus),
        num_gpus=args.slots,
        # Ray's reservable memory: enough for the sweep's memory limit to allow every slot.
        _memory=int((args.slots + 1) * memory_per_trial) or None,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "RAY_AIR_NEW_OUTPUT": "0"}},
    )
    timeline = SlotTimeline()
    try:
        sweep = Sweep(suite, opts, "bench/cluster_sweep.py", resume=False,
                      trainable=stand_in(args.seconds_per_iteration), callbacks=[timeline],
                      export_policies=False)
        start, wall_start, cpu_start = time.monotonic(), time.time(), time.process_time()
        manifest = sweep.run().to_dict()
        makespan = time.monotonic() - start
        driver_cpu_s = time.process_time() - cpu_start
    finally:
        ray.shutdown()
    figures = measure(manifest, timeline, args.slots, args.seconds_per_iteration, makespan)
    figures.update({
        "bench": "cluster_sweep",
        "suite": args.suite,
        "budget": args.budget,
        "scale": args.scale,
        "tasks": len(opts.tasks),
        "experiment": str(root / "runs" / name) if args.keep else None,
        "driver_cpu_s": round(driver_cpu_s, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    })
    if args.timeline is not None:
        args.timeline.write_text(json.dumps([
            [*timeline.labels.get(trial_id, ("?", "?")), round(begin - wall_start, 3),
             round(end - wall_start, 3)]
            for trial_id, begin, end in sorted(timeline.intervals, key=lambda i: i[1])
        ]))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
