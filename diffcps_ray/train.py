"""``python -m diffcps_ray.train``: one DiffCPS run through RLlib.

    python -m diffcps_ray.train --task TASK --data-root DATA_ROOT --out DIR
        [--iterations N] [--set key=value ...] [--seed S] [--num-learners N]

One iteration is ``gradient_steps_per_iteration`` gradient steps (default 1000, one of
the authors' epochs); the policy is evaluated in the task's simulator every
``eval_interval`` iterations and once more at the end if the last iteration was not an
evaluation iteration. Writes an RLlib checkpoint to DIR/checkpoint, the final policy to
DIR/policy (policy.json + weights.pt: load it with ``diffcps_ray.load_policy`` or evaluate
it with ``python -m diffcps_ray.evaluate DIR``), one JSON line per iteration to
DIR/progress.jsonl and DIR/summary.json (task, settings, final_score and best_score, both
D4RL-normalised: the paper reports the best, the last is the honest one).

``--set`` takes any DiffCPSSettings field (kappa, lambda_clip, batch_size, ...) and
gradient_steps_per_iteration, eval_interval, eval_episodes, eval_num_envs, eval_seed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from diffcps_ray.cli import (
    PlainArgumentParser,
    check_ray_address,
    non_negative_float,
    non_negative_int,
    positive_int,
    run_main,
)
from diffcps_ray.errors import ConfigError, DiffCPSError
from diffcps_ray.runtime import set_torch_threads, thread_env

RUN_SETTINGS = ("gradient_steps_per_iteration", "eval_interval", "eval_num_envs", "eval_seed")


def build_parser() -> argparse.ArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m diffcps_ray.train",
        description=(
            "Train DiffCPS on one task through RLlib: an RLlib checkpoint, progress.jsonl and "
            "summary.json land in --out. One iteration is gradient_steps_per_iteration "
            "gradient steps (default 1000, one of the authors' epochs)."
        ),
    )
    parser.add_argument("--task", required=True, help="task name, e.g. hopper-medium-v2")
    parser.add_argument("--data-root", required=True, type=Path, metavar="DATA_ROOT",
                        help="directory of task data, with the task's shards in DATA_ROOT/<task>")
    parser.add_argument("--out", required=True, type=Path,
                        help="output directory (checkpoint, progress.jsonl, summary.json)")
    parser.add_argument("--iterations", type=positive_int, default=None,
                        help="training iterations (default: the task's epochs, "
                             "2000 locomotion / 1000 AntMaze)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a DiffCPS setting (kappa, lambda_clip, batch_size, ...) or "
                             "gradient_steps_per_iteration, eval_interval, eval_episodes, "
                             "eval_num_envs, eval_seed (repeatable)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the networks, minibatches and evaluation (default 0)")
    parser.add_argument("--num-learners", type=non_negative_int, default=0,
                        help="0: one learner in this process (default); N: N learner actors")
    parser.add_argument("--gpus-per-learner", type=non_negative_float, default=0.0, metavar="GPUS",
                        help="GPUs for each learner, fractions allowed (default 0); with "
                             "--num-learners 0, the one learner in this process")
    parser.add_argument("--address", default=None,
                        help="join this Ray cluster (e.g. auto or HOST:6379); default local")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch threads per process (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    return parser


def parse_value(text: str) -> Any:
    """A --set value: int, float, true/false, none, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings to a dict; unknown keys raise ConfigError with a suggestion."""
    from diffcps_ray.rllib.config import DIFFCPS_FIELDS

    known = (*DIFFCPS_FIELDS, *RUN_SETTINGS)
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}.")
        if key not in known or key == "extra":
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"--set {key}: no such setting{hint}.")
        overrides[key] = parse_value(value)
    return overrides


def make_config(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    from diffcps_ray.rllib.config import DiffCPSConfig

    run = {key: overrides.pop(key) for key in list(overrides) if key in RUN_SETTINGS}
    config = (
        DiffCPSConfig()
        .environment(task=args.task)
        .offline_data(data_root=str(args.data_root))
        .training(**overrides)
        .evaluation(**{k: v for k, v in run.items() if k != "gradient_steps_per_iteration"})
        .learners(num_learners=args.num_learners, num_gpus_per_learner=args.gpus_per_learner)
        .debugging(seed=args.seed, log_level="ERROR")
    )
    if "gradient_steps_per_iteration" in run:
        config.training(gradient_steps_per_iteration=run["gradient_steps_per_iteration"])
    return config


def _quiet_ray_logs() -> None:
    for name in ("ray", "ray.data", "ray.rllib", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def init_ray(address: str | None, threads: int) -> bool:
    """Start (or join) Ray; True when this process started it."""
    import ray

    # The sweep's quiet start-up settings (token authentication, worker start-up).
    from diffcps_ray.tune.ray_start import ray_init_settings, worker_env

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {**thread_env(threads), **worker_env()}}
    if address:
        ray.init(address=address, runtime_env=runtime_env, **ray_init_settings(address))
    else:
        # A fresh local instance ("local": never attach to a cluster someone else started
        # with `ray start` on this machine). Two logical CPUs more than cores: Ray Data's
        # read tasks must fit beside the learner(s), or a 2-core machine deadlocks
        # (docs/performance.md).
        num_cpus = (os.cpu_count() or 2) + 2
        ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env,
                 **ray_init_settings(None, num_cpus))
    return True


def _progress_line(result: dict[str, Any], iterations: int) -> str:
    learner = result.get("learners", {}).get("default_policy", {})
    evaluation = result.get("evaluation", {})
    parts = [
        f"iter {result['training_iteration']}/{iterations}",
        f"steps {result['num_gradient_steps']}",
        f"critic {learner.get('critic_loss', math.nan):.4g}",
        f"L_c {learner.get('diffusion_loss', math.nan):.4g}",
        f"lambda {learner.get('lambda', math.nan):.3g}",
        f"Q {learner.get('q_mean', math.nan):.4g}",
        f"{learner.get('steps_per_s', math.nan):.1f} steps/s",
    ]
    score = evaluation.get("normalized_score", math.nan)
    if not math.isnan(score):
        parts.append(f"score {score:.1f} (best {evaluation['best_normalized_score']:.1f})")
    return "  ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _recorded_eval_env(algo: Any) -> dict[str, Any] | None:
    """The data's recorded evaluation env (a manifest record), or None for the task's own."""
    recorded = algo.evaluation_task.eval_env
    return None if recorded is None else recorded.to_record()


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run the training; return the summary (also written to OUT/summary.json)."""
    _quiet_ray_logs()
    overrides = parse_overrides(args.overrides)
    config = make_config(args, overrides)
    # Validate before starting Ray: bad settings and missing data fail in a second.
    try:
        config.validate()
    except DiffCPSError:
        raise
    except ValueError as error:  # RLlib's own checks: keep their first sentence
        raise ConfigError(str(error).splitlines()[0]) from None
    settings = config.get_diffcps_settings()
    iterations = args.iterations or int(settings.num_epochs)
    out = args.out.expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"Cannot create {out}: {error.strerror or error}.") from None

    started_ray = init_ray(args.address, args.threads)
    algo = None
    start = time.perf_counter()
    try:
        algo = config.build_algo()
        interval = config.resolved_eval_interval
        with open(out / "progress.jsonl", "w") as progress:
            for _ in range(iterations):
                result = algo.train()
                row = {
                    "training_iteration": result["training_iteration"],
                    "num_gradient_steps": result["num_gradient_steps"],
                    "time_total_s": result["time_total_s"],
                    "learner": result.get("learners", {}).get("default_policy", {}),
                    "evaluation": result.get("evaluation", {}),
                }
                progress.write(json.dumps(_jsonable(row)) + "\n")
                progress.flush()
                if not args.quiet:
                    print(_progress_line(result, iterations), flush=True)
        if not interval or iterations % interval:
            # The last iteration was not evaluated: evaluate the final weights.
            algo.evaluate_in_simulator()
        evaluation = algo.evaluation_metrics()
        checkpoint = algo.save_to_path(str((out / "checkpoint").resolve()))
        summary = {
            "task": args.task,
            "seed": args.seed,
            "iterations": iterations,
            "num_gradient_steps": algo.num_gradient_steps,
            "final_score": evaluation["normalized_score"],
            "best_score": evaluation["best_normalized_score"],
            "final_return": evaluation["episode_return_mean"],
            "final_success_rate": evaluation.get("success_rate"),
            "num_evaluations": evaluation["num_evaluations"],
            "eval_episodes": config.resolved_eval_episodes,
            "settings": settings.to_dict(),
            "run": {
                "gradient_steps_per_iteration": config.resolved_gradient_steps,
                "eval_interval": interval,
                "num_learners": args.num_learners,
            },
            "checkpoint": str(checkpoint),
            "data_root": str(args.data_root.expanduser().resolve()),
            "eval_env": _recorded_eval_env(algo),
            "time_s": time.perf_counter() - start,
        }
        summary = _jsonable(summary)
        from diffcps_ray.policy import export_train_policy

        summary["policy"] = str(export_train_policy(out, Path(str(checkpoint)), summary))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        if algo is not None:
            algo.stop()
        if started_ray:
            import ray

            ray.shutdown()
    if not args.quiet:
        print(f"final score {summary['final_score']:.1f}, best {summary['best_score']:.1f}; "
              f"summary in {out / 'summary.json'}, policy in {summary['policy']}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_torch_threads(args.threads)
    if args.address:
        check_ray_address(args.address)  # one sentence now, not Ray's minutes of retries
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
