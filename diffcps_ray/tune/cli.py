"""``python -m diffcps_ray.tune``: tune kappa and lambda_clip for a suite, then confirm.

    python -m diffcps_ray.tune --suite pointmaze --budget demo --storage results --name demo

Steps: load and validate the suite (tune_configs/), make sure the data is
there (generate it, convert it, or stop with one sentence before starting Ray), start or
join Ray, run every task's search and confirmation in one Tune experiment, keep
STORAGE/NAME/experiment.json current, and print a summary per task.

Ctrl-C or SIGTERM (what ``kill`` and cluster schedulers send) stops the sweep at any
point: Tune saves its state, experiment.json says "interrupted", the resume command is
printed and the exit status is 130.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from diffcps_ray.cli import (
    PlainArgumentParser,
    check_ray_address,
    non_negative_float,
    positive_float,
    positive_int,
)
from diffcps_ray.errors import ConfigError
from diffcps_ray.tune.suites import BUDGETS, list_suites, load_suite

DEFAULT_DATA_CPUS = 2.0
# Tune logger callbacks --logger adds (diffcps_ray.tune.tracking.logger_callbacks).
LOGGERS = ("tensorboard", "wandb", "mlflow")
INTERRUPTED_EXIT = 130  # the shell's status for a process ended by SIGINT
NO_RESULT_EXIT = 3  # the sweep finished, but a task produced no result
# Defaults of the options a resumed sweep may change (None in the parser: "not given").
RESUMABLE_DEFAULTS = {"gpus_per_trial": 0.0, "cpus_per_trial": 1.0, "max_concurrent": None,
                      "data_cpus": DEFAULT_DATA_CPUS, "address": None, "loggers": []}


def build_parser() -> argparse.ArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m diffcps_ray.tune",
        description=(
            "Tune DiffCPS's kappa and lambda_clip for every task of a suite in one Ray Tune "
            "experiment (the sweep's own searcher asks each task's Optuna TPE study for "
            "proposals; ASHA per task stops weak trials), then re-run the chosen config per "
            "task with several seeds. Exit status: 0 done, 2 bad input, 3 a task produced "
            "no result, 130 interrupted (--resume continues)."
        ),
    )
    parser.add_argument("--suite", default="pointmaze",
                        help=f"one of {', '.join(list_suites())} (default: pointmaze)")
    parser.add_argument("--budget", default="demo", choices=BUDGETS,
                        help="smoke (CI, ~1 min), demo (<15 min on 2 cores), paper (authors')")
    # --data-root is the flag of `data` and `train` too (`data` keeps --out as an alias).
    parser.add_argument("--data-root", default="data", metavar="DATA_ROOT",
                        help="directory of task data, DATA_ROOT/<task> (made if missing); "
                             "default ./data")
    parser.add_argument("--storage", default="results",
                        help="a directory or a URI Tune accepts (s3://...); default ./results")
    parser.add_argument("--name", default=None,
                        help="experiment name; it lands in STORAGE/NAME (default SUITE-BUDGET)")
    parser.add_argument("--address", default=None,
                        help="join this Ray cluster (e.g. auto or HOST:6379); default local")
    # A trial trains with one learner in its own process: GPUs per trial and per learner
    # are the same number; the name matches `train --gpus-per-learner`.
    parser.add_argument("--gpus-per-learner", "--gpus-per-trial", dest="gpus_per_trial",
                        type=non_negative_float, default=None, metavar="GPUS",
                        help="GPUs for each trial's learner, fractions allowed (default 0); "
                             "each trial trains with one learner in its own process, so this "
                             "is also the trial's GPU share")
    parser.add_argument("--cpus-per-trial", type=positive_float, default=None, metavar="CPUS",
                        help="CPUs per trial, fractions allowed (default 1)")
    parser.add_argument("--num-samples", type=positive_int, default=None, metavar="N",
                        help="search trials per task (default: the budget's)")
    parser.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                        help="seeds per task in the confirmation phase (default: the budget's)")
    parser.add_argument("--max-concurrent", type=positive_int, default=None, metavar="N",
                        help="trials at once (default: CPUs left after Ray Data's share)")
    parser.add_argument("--data-cpus", type=non_negative_float, default=None, metavar="CPUS",
                        help="CPUs kept free of trials for Ray Data tasks (default 2)")
    parser.add_argument("--optuna-storage", default=None, metavar="URL",
                        help="keep the Optuna studies in this database (sqlite:///f.db, "
                             "postgresql://...); default: journal files in the experiment")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="run only these tasks of the suite")
    parser.add_argument("--base", default=None,
                        help="ablations only: run on this suite's tasks and budgets instead")
    parser.add_argument("--logger", dest="loggers", action="append", choices=LOGGERS,
                        default=None, metavar="{" + ",".join(LOGGERS) + "}",
                        help="also log every trial's results to tensorboard (event files in "
                             "each trial's directory), wandb or mlflow (repeatable; on "
                             "--resume, replaces the recorded ones)")
    parser.add_argument("--resume", action="store_true",
                        help="continue STORAGE/NAME where it stopped (starts it if absent); "
                             "--address, --gpus-per-learner, --cpus-per-trial, "
                             "--max-concurrent, --data-cpus and --logger may change, the rest "
                             "is kept")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    from diffcps_ray.runtime import set_torch_threads

    set_torch_threads(1)
    from diffcps_ray.tune.tracking import check_loggers

    # A missing tracker package stops here, before data preparation and Ray.
    check_loggers(args.loggers or [])
    from diffcps_ray.tune.console import elapsed, summarise
    from diffcps_ray.tune.ray_start import start_ray
    from diffcps_ray.tune.sweep import Sweep, SweepInterruptedError, SweepOptions, resume_command

    name = args.name or f"{args.suite}-{args.budget}"
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    resume_hint = resume_command(storage, name)
    given = {key: getattr(args, key) for key in RESUMABLE_DEFAULTS
             if getattr(args, key) is not None}
    if args.loggers:
        given["loggers"] = list(dict.fromkeys(args.loggers))
    resumed = _saved_options(storage, name) if args.resume else None
    if resumed is not None:
        # A resumed sweep computes what was started; only where and how big it runs may change.
        opts = SweepOptions(**{**resumed, **given, "storage": storage, "name": name})
        changed = {k: v for k, v in given.items() if resumed.get(k) != v}
        print(f"Resuming {opts.suite} ({opts.budget}) in {storage}/{name}"
              + (": changed " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                          for k, v in changed.items()) if changed else "")
              + "; kept the recorded suite, budget, tasks, samples, seeds and data root.")
    else:
        suite = load_suite(args.suite, args.base)
        budget = suite.budget(args.budget)
        seeds = args.seeds or suite.ablation_seeds or budget.seeds
        opts = SweepOptions(
            suite=args.suite,
            budget=args.budget,
            tasks=[t.name for t in suite.select_tasks(args.tasks)],
            data_root=str(Path(args.data_root).expanduser().resolve()),
            storage=storage,
            name=name,
            num_samples=args.num_samples or budget.num_samples,
            seeds=seeds,
            base=args.base,
            optuna_storage=args.optuna_storage,
            **{**RESUMABLE_DEFAULTS, **given},
        )
    suite = load_suite(opts.suite, opts.base)
    # A cluster or database that cannot be reached stops here with one sentence, before
    # data preparation and Ray (which would retry an unreachable address for minutes).
    if opts.address:
        check_ray_address(opts.address)
    if opts.optuna_storage:
        from diffcps_ray.tune.studies import check_storage_url

        check_storage_url(opts.optuna_storage)

    sweep = None
    started = False
    try:
        with _signals_stop_the_sweep():
            from diffcps_ray.tune.data_prep import prepare_data

            command = "python -m diffcps_ray.tune " + shlex.join(
                sys.argv[1:] if argv is None else argv)
            sweep = Sweep(suite, opts, command, resume=args.resume)
            # Before Ray: a missing D4RL file stops here with one sentence. A resumed sweep
            # keeps the budget (and so the data) it started with.
            prepare_data(suite, opts.tasks, Path(opts.data_root), sweep.budget.transitions)
            started = start_ray(opts.address, opts.data_cpus)
            # Ray's driver start-up installs a SIGTERM handler that exits at once; ours
            # stops Tune cleanly instead.
            signal.signal(signal.SIGTERM, _terminate)
            record = sweep.run()
    except (KeyboardInterrupt, SweepInterruptedError):
        if sweep is not None:
            sweep.mark_interrupted()
        print(f"\nInterrupted; nothing finished is lost. Continue with: {resume_hint}",
              flush=True)
        return INTERRUPTED_EXIT
    finally:
        if started:
            import ray

            ray.shutdown()
    print()
    print(f"Experiment: {sweep.store.uri} (experiment.json lists every trial)")
    for line in summarise(record, suite):
        print("  " + line)
    failed = sweep.failed_tasks()
    if failed:
        print(f"Finished in {elapsed(start)}, but {len(failed)} task(s) produced no result: "
              + "; ".join(f"{task} ({why})" for task, why in failed.items()), file=sys.stderr)
        return NO_RESULT_EXIT
    print(f"Done in {elapsed(start)}.")
    return 0


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM acts as Ctrl-C: Tune's SIGINT handler while it runs, else KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not _terminate:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextmanager
def _signals_stop_the_sweep() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt outside Tune; Tune stops cleanly inside."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _saved_options(storage: str, name: str) -> dict | None:
    from diffcps_ray.tune.store import ExperimentStore
    from diffcps_ray.tune.sweep import SweepOptions

    store = ExperimentStore(storage, name)
    if not store.exists():
        print(f"Nothing to resume in {store.uri}; starting it.")
        return None
    options = store.read_record().options
    if not options:
        raise ConfigError(f"{store.uri}/experiment.json has no recorded options to resume.")
    known = {field.name for field in fields(SweepOptions)}
    return {k: v for k, v in options.items() if k in known}
