"""``python -m diffcps_ray.data {generate,convert,inspect}``.

generate  --task T --data-root DATA_ROOT [--steps N] [--seed S]  simulate a dataset
convert   --d4rl FILE.hdf5 | --minari DATASET_ID --task T --data-root DATA_ROOT
inspect   DATA_ROOT/<task> [--json]                                summarise a task's shards

``--data-root`` is the flag ``train`` and ``tune`` use too; ``--out`` is kept as its alias.

Bad input ends with one sentence on stderr and exit status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from diffcps_ray.cli import PlainArgumentParser, non_negative_int, positive_int, run_main
from diffcps_ray.data.schema import DEFAULT_ROWS_PER_SHARD

DEFAULT_GENERATE_STEPS = 200_000


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m diffcps_ray.data",
        description="Make, convert and inspect the Parquet shards DiffCPS trains on.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=PlainArgumentParser, metavar="COMMAND",
        help="generate, convert or inspect",
    )

    def add_output_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--task", required=True, help="task name, e.g. hopper-medium-v2")
        # --out: the old name, kept for scripts; train and tune call this directory --data-root.
        sub.add_argument("--data-root", "--out", dest="data_root", required=True, type=Path,
                         metavar="DATA_ROOT",
                         help="directory of task data; the shards go to DATA_ROOT/<task>")
        sub.add_argument(
            "--rows-per-shard",
            type=positive_int,
            default=DEFAULT_ROWS_PER_SHARD,
            help=f"rows per Parquet file (default {DEFAULT_ROWS_PER_SHARD})",
        )
        sub.add_argument(
            "--overwrite", action="store_true", help="replace DATA_ROOT/<task> if it exists"
        )

    generate = commands.add_parser(
        "generate", help="simulate a dataset in the real simulator",
        description="Simulate a dataset for a generated task (e.g. pointmaze-umaze) in its "
                    "real simulator and write it as shards.",
    )
    add_output_flags(generate)
    generate.add_argument(
        "--steps", type=positive_int, default=DEFAULT_GENERATE_STEPS,
        help=f"simulator steps to record, one transition each (default {DEFAULT_GENERATE_STEPS:,})",
    )
    generate.add_argument("--seed", type=non_negative_int, default=0,
                          help="seed of the simulator and the behaviour policy (default 0)")

    convert = commands.add_parser(
        "convert", help="convert a D4RL HDF5 file or Minari dataset",
        description="Convert a D4RL HDF5 file or a local Minari dataset into shards.",
    )
    source = convert.add_mutually_exclusive_group(required=True)
    source.add_argument("--d4rl", type=Path, metavar="FILE.hdf5", help="a D4RL HDF5 file")
    source.add_argument("--minari", metavar="DATASET_ID", help="local id, or a dataset directory")
    add_output_flags(convert)

    inspect = commands.add_parser(
        "inspect", help="summarise DATA_ROOT/<task>",
        description="Summarise a task's shards: rows, episodes, returns, dimensions.",
    )
    inspect.add_argument("task_dir", type=Path, metavar="DATA_ROOT/<task>",
                         help="a task's directory of shards")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _check_target(out: Path, task: str, overwrite: bool) -> None:
    """Refuse an existing target before spending minutes simulating or reading."""
    from diffcps_ray.data.shards import task_path
    from diffcps_ray.errors import DataError

    target = task_path(out, task)
    if target.exists() and not overwrite:
        raise DataError(f"{target} already exists; pass --overwrite to replace it.")


def _report_written(path: Path, seconds: float) -> None:
    from diffcps_ray.data.shards import read_manifest

    manifest = read_manifest(path)
    _log(
        f"wrote {manifest.num_rows} transitions ({manifest.num_episodes} episodes) in "
        f"{len(manifest.shards)} shard(s) to {path} in {seconds:.1f} s"
    )


def _write(
    args: argparse.Namespace,
    transitions: dict[str, np.ndarray],
    source: dict[str, Any],
    origin: str,
    start: float,
) -> None:
    """Shards for ``--task`` under ``--data-root`` (atomically), then one summary line."""
    from diffcps_ray.data.shards import write_shards

    path = write_shards(
        transitions,
        args.task,
        args.data_root,
        source,
        rows_per_shard=args.rows_per_shard,
        overwrite=args.overwrite,
        origin=origin,
        progress=_log,
    )
    _report_written(path, time.perf_counter() - start)


def cmd_generate(args: argparse.Namespace) -> None:
    from diffcps_ray.data.generate import GENERATOR_VERSION, generate_dataset
    from diffcps_ray.envs.tasks import get_task

    get_task(args.task)
    _check_target(args.data_root, args.task, args.overwrite)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - start, 1e-9)
        _log(f"generate {args.task}: {done}/{total} transitions ({rate:,.0f}/s)")

    transitions = generate_dataset(args.task, args.steps, args.seed, progress=progress)
    source = {"kind": "generated", "seed": args.seed, "steps": args.steps,
              "generator_version": GENERATOR_VERSION}
    _write(args, transitions, source, f"generated data for {args.task}", start)


def cmd_convert(args: argparse.Namespace) -> None:
    from diffcps_ray.envs.tasks import get_task

    get_task(args.task)
    _check_target(args.data_root, args.task, args.overwrite)
    start = time.perf_counter()
    if args.d4rl is not None:
        from diffcps_ray.data.d4rl import load_d4rl

        _log(f"reading {args.d4rl}")
        transitions, source = load_d4rl(args.d4rl, args.task)
        origin = str(args.d4rl)
    else:
        from diffcps_ray.data.minari import load_minari

        _log(f"reading Minari dataset {args.minari}")
        transitions, source = load_minari(args.minari, args.task)
        origin = f"Minari dataset {args.minari!r}"
    _write(args, transitions, source, origin, start)


def summarize(task_dir: Path) -> dict[str, Any]:
    """Rows, episodes, return statistics, dims, reference scores of a task's shards."""
    from diffcps_ray.data.shards import load_transitions, read_manifest

    manifest = read_manifest(task_dir)
    columns = load_transitions(task_dir)
    _, episode_index = np.unique(columns["eps_id"], return_inverse=True)
    returns = np.bincount(episode_index, weights=columns["rewards"].astype(np.float64))
    lengths = np.bincount(episode_index)
    span = manifest.ref_max_score - manifest.ref_min_score

    def normalized(value: float) -> float:
        return 100.0 * (value - manifest.ref_min_score) / span

    return {
        "task": manifest.task,
        "family": manifest.family,
        "rows": len(columns["rewards"]),
        "episodes": len(returns),
        "obs_dim": manifest.obs_dim,
        "act_dim": manifest.act_dim,
        "ref_min_score": manifest.ref_min_score,
        "ref_max_score": manifest.ref_max_score,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "normalized_return_mean": normalized(float(returns.mean())),
        "episode_length_mean": float(lengths.mean()),
        "terminal_rows": int(columns["terminateds"].sum()),
        "truncated_rows": int(columns["truncateds"].sum()),
        "reward_mean": float(columns["rewards"].mean()),
        "shards": len(manifest.shards),
        "bytes": int(sum((task_dir / s.file).stat().st_size for s in manifest.shards)),
        "source": manifest.source,
        "format_version": manifest.format_version,
        "created": manifest.created,
    }


def cmd_inspect(args: argparse.Namespace) -> None:
    summary = summarize(args.task_dir)
    if args.json:
        print(json.dumps(summary))
        return
    source = summary["source"]
    origin = source.get("file") or source.get("dataset_id") or ""
    print(f"task           {summary['task']} ({summary['family']})")
    print(f"source         {source.get('kind')} {origin}".rstrip())
    print(
        f"rows           {summary['rows']:,} in {summary['shards']} shard(s), "
        f"{summary['bytes'] / 1e6:.1f} MB"
    )
    print(
        f"episodes       {summary['episodes']:,} "
        f"(mean length {summary['episode_length_mean']:.1f}; "
        f"{summary['terminal_rows']:,} terminal rows, "
        f"{summary['truncated_rows']:,} truncated rows)"
    )
    print(f"dims           obs {summary['obs_dim']}, actions {summary['act_dim']}")
    print(
        f"returns        mean {summary['return_mean']:.2f} +- {summary['return_std']:.2f}, "
        f"min {summary['return_min']:.2f}, max {summary['return_max']:.2f} "
        f"(sum of stored rewards per episode)"
    )
    print(
        f"reference      min {summary['ref_min_score']:g}, max {summary['ref_max_score']:g}; "
        f"mean return normalised: {summary['normalized_return_mean']:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"generate": cmd_generate, "convert": cmd_convert, "inspect": cmd_inspect}
    handlers[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
