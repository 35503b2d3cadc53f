"""``python -m diffcps_ray.tune``: tune kappa and lambda_clip for a suite, then confirm.

    python -m diffcps_ray.tune --suite pointmaze --budget demo --storage results --name demo

Steps: load and validate the suite (tune_configs/), make sure the data is there (generate
it, convert it, or stop with one sentence before starting Ray), start or join Ray, run the
search phase per task and the confirmation phase, keep STORAGE/NAME/experiment.json
current, and print a summary per task.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from diffcps_ray.cli import (
    PlainArgumentParser,
    non_negative_float,
    positive_float,
    positive_int,
)
from diffcps_ray.errors import ConfigError
from diffcps_ray.tune.suites import BUDGETS, list_suites, load_suite

DEFAULT_DATA_CPUS = 2.0
# Tune logger callbacks --logger adds (diffcps_ray.tune.reporting.logger_callbacks).
LOGGERS = ("tensorboard", "wandb", "mlflow")


def build_parser() -> argparse.ArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m diffcps_ray.tune",
        description=(
            "Tune DiffCPS's kappa and lambda_clip for every task of a suite with Ray Tune + "
            "OptunaSearch and ASHA, then re-run the best config per task with several seeds."
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
                        type=non_negative_float, default=0.0, metavar="GPUS",
                        help="GPUs for each trial's learner, fractions allowed (default 0); "
                             "each trial trains with one learner in its own process, so this "
                             "is also the trial's GPU share")
    parser.add_argument("--cpus-per-trial", type=positive_float, default=1.0, metavar="CPUS",
                        help="CPUs per trial, fractions allowed (default 1)")
    parser.add_argument("--num-samples", type=positive_int, default=None, metavar="N",
                        help="search trials per task (default: the budget's)")
    parser.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                        help="seeds per task in the confirmation phase (default: the budget's)")
    parser.add_argument("--max-concurrent", type=positive_int, default=None, metavar="N",
                        help="trials at once (default: CPUs left after Ray Data's share)")
    parser.add_argument("--data-cpus", type=non_negative_float, default=DEFAULT_DATA_CPUS,
                        metavar="CPUS",
                        help="CPUs kept free of trials for Ray Data tasks (default 2)")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="run only these tasks of the suite")
    parser.add_argument("--base", default=None,
                        help="ablations only: run on this suite's tasks and budgets instead")
    parser.add_argument("--logger", dest="loggers", action="append", choices=LOGGERS,
                        default=None, metavar="{" + ",".join(LOGGERS) + "}",
                        help="also log every trial's results to tensorboard (event files in "
                             "each trial's directory), wandb or mlflow (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue STORAGE/NAME where it stopped (starts it if absent)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.monotonic()
    from diffcps_ray.runtime import set_torch_threads

    set_torch_threads(1)
    from diffcps_ray.tune.reporting import check_loggers

    # A missing tracker package stops here, before data preparation and Ray.
    check_loggers(args.loggers or [])
    from diffcps_ray.tune.sweep import Sweep, SweepOptions, elapsed, start_ray, summarise

    name = args.name or f"{args.suite}-{args.budget}"
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    resumed = None
    if args.resume:
        resumed = _saved_options(storage, name)
    if resumed is not None:
        # A resumed sweep is the sweep that was started: its recorded options win.
        opts = SweepOptions(**{**resumed, "storage": storage, "name": name,
                               "address": args.address or resumed.get("address"),
                               "loggers": args.loggers or resumed.get("loggers") or []})
        check_loggers(opts.loggers)
        print(f"Resuming {opts.suite} ({opts.budget}) in {storage}/{name}.")
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
            address=args.address,
            gpus_per_trial=args.gpus_per_trial,
            cpus_per_trial=args.cpus_per_trial,
            num_samples=args.num_samples or budget.num_samples,
            seeds=seeds,
            max_concurrent=args.max_concurrent,
            data_cpus=args.data_cpus,
            base=args.base,
            loggers=list(dict.fromkeys(args.loggers or [])),
        )
    suite = load_suite(opts.suite, opts.base)
    budget = suite.budget(opts.budget)

    from diffcps_ray.tune.data_prep import prepare_data

    # Before Ray: a missing D4RL file stops here with one sentence.
    prepare_data(suite, opts.tasks, Path(opts.data_root), budget.transitions)

    command = "python -m diffcps_ray.tune " + shlex.join(sys.argv[1:] if argv is None else argv)
    sweep = Sweep(suite, opts, command, resume=args.resume)
    started = start_ray(opts)
    try:
        manifest = sweep.run()
    finally:
        if started:
            import ray

            ray.shutdown()
    print()
    print(f"Experiment: {sweep.store.uri} (experiment.json lists every trial)")
    for line in summarise(manifest, suite, budget.confirm.eval_episodes):
        print("  " + line)
    print(f"Done in {elapsed(start)}.")
    return 0


def _saved_options(storage: str, name: str) -> dict | None:
    from diffcps_ray.tune.manifest import ExperimentStore

    store = ExperimentStore(storage, name)
    if not store.exists():
        print(f"Nothing to resume in {store.uri}; starting it.")
        return None
    options = store.read_json().get("options")
    if not isinstance(options, dict):
        raise ConfigError(f"{store.uri}/experiment.json has no recorded options to resume.")
    from diffcps_ray.tune.sweep import SweepOptions

    known = set(asdict(SweepOptions("", "", [], "", "", "", None, 0, 1, 1, 1, None, 0)))
    return {k: v for k, v in options.items() if k in known}
