"""Data-layer throughput: D4RL HDF5 -> shards -> tensors, and a Ray Data read.

For each task shape (hopper: 11/3, antmaze: 29/8) it makes ROWS synthetic transitions in
memory with D4RL's episode structure (falls and 1000-step timeouts for hopper; timeouts
only, relabelled terminal runs for antmaze), writes them as a D4RL HDF5 file, converts
(read + qlearning rows + validate + Parquet/zstd), loads with pyarrow, materialises into
torch tensors, and reads through Ray Data. Prints one JSON object last.

    python bench/data.py [--rows 1000000] [--tasks hopper-medium-v2 antmaze-umaze-v2] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from diffcps_ray.data.d4rl import load_d4rl  # noqa: E402
from diffcps_ray.data.shards import (  # noqa: E402
    load_transitions,
    materialize,
    read_dataset,
    shard_paths,
    write_shards,
)
from diffcps_ray.envs.tasks import get_task  # noqa: E402


def synthetic_d4rl(task: str, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays in a D4RL file's layout and dtypes with a plausible episode structure."""
    spec = get_task(task)
    rng = np.random.default_rng(seed)
    terminals = np.zeros(rows, dtype=bool)
    timeouts = np.zeros(rows, dtype=bool)
    position = 0
    while position < rows:
        if spec.family == "antmaze":
            length = spec.max_episode_steps
        else:  # a third of the episodes fall early, the rest run to the limit
            length = int(rng.integers(50, 1000)) if rng.random() < 0.33 else 1000
        end = min(position + length, rows) - 1
        if length == spec.max_episode_steps:
            timeouts[end] = True
        else:
            terminals[end] = True
        position = end + 1
    rewards = rng.normal(size=rows).astype(np.float32)
    if spec.family == "antmaze":
        rewards = (rng.random(rows) < 0.05).astype(np.float32)
        terminals = rewards > 0
    return {
        "observations": rng.normal(size=(rows, spec.obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(rows, spec.act_dim)).astype(np.float32),
        "rewards": rewards,
        "terminals": terminals,
        "timeouts": timeouts,
    }


def bench_task(task: str, rows: int, work: Path, use_ray: bool) -> dict[str, float]:
    result: dict[str, float] = {"rows_in_file": rows}
    arrays = synthetic_d4rl(task, rows)
    hdf5 = work / f"{task}.hdf5"
    start = time.perf_counter()
    with h5py.File(hdf5, "w") as f:
        for key, value in arrays.items():
            f[key] = value
    result["hdf5_write_s"] = time.perf_counter() - start
    result["hdf5_mb"] = hdf5.stat().st_size / 1e6
    del arrays

    start = time.perf_counter()
    transitions, source = load_d4rl(hdf5, task)
    read_s = time.perf_counter() - start
    task_dir = write_shards(transitions, task, work / "data", source, overwrite=True)
    convert_s = time.perf_counter() - start
    result.update(
        rows=len(transitions["rewards"]),
        convert_read_s=read_s,
        convert_s=convert_s,
        convert_rows_per_s=rows / convert_s,
        parquet_mb=sum(p.stat().st_size for p in task_dir.glob("*.parquet")) / 1e6,
    )
    del transitions

    start = time.perf_counter()
    columns = load_transitions(task_dir)
    result["load_transitions_s"] = time.perf_counter() - start
    del columns
    start = time.perf_counter()
    tensors = materialize(pq.read_table(p) for p in shard_paths(task_dir, verify=False))
    result["materialize_pyarrow_s"] = time.perf_counter() - start
    result["materialized_mb"] = sum(t.numel() * t.element_size() for t in tensors.values()) / 1e6
    del tensors

    if use_ray:
        for attempt in ("first", "second"):  # the first read pays Ray Data's start-up
            start = time.perf_counter()
            tensors = materialize(read_dataset(task_dir))
            result[f"ray_read_materialize_{attempt}_s"] = time.perf_counter() - start
            assert len(tensors["rewards"]) == result["rows"]
            del tensors
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tasks", nargs="+", default=["hopper-medium-v2", "antmaze-umaze-v2"])
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--num-cpus", type=int, default=2, help="for ray.init")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="diffcps_bench_data_"))
    if not args.no_ray:
        import ray

        ray.init(
            address="local",  # a private instance, never a cluster someone else started
            num_cpus=args.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
        )
    results: dict[str, object] = {"rows": args.rows, "cpus": os.cpu_count()}
    try:
        for task in args.tasks:
            print(f"benchmarking {task} ({args.rows:,} rows) ...", file=sys.stderr, flush=True)
            results[task] = {
                k: round(v, 3)
                for k, v in bench_task(task, args.rows, work, not args.no_ray).items()
            }
    finally:
        if not args.no_ray:
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
