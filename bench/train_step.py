"""Throughput of one full DiffCPS training step (``DiffCPSAgent.update``).

Shapes: hopper-like (obs 11, act 3, no max-Q backup) and AntMaze-like (obs 29, act 8,
max-Q backup with 10 next actions per state); batch 256, T=5. For each shape and thread
count, the agent and an unoptimised reference step (``bench/reference_step.py``, same
mathematics) are timed in alternating blocks after a warm-up, so machine load affects both
alike; the reported figures are medians over the blocks and the speedup is the median of
the per-block ratios.

    python bench/train_step.py                       # both shapes, 1 and 2 threads
    python bench/train_step.py --threads 1 --steps 20 --shape hopper
    python bench/train_step.py --device cuda --no-reference

The last line printed is one JSON object:
``{"hopper": {"threads_1": steps_per_s, ...}, "antmaze": {...}, "reference": {...},
"speedup": {...}, "meta": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# runnable as a script from anywhere: the bench helpers and the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from reference_step import ReferenceAgent  # noqa: E402

from diffcps_ray.algorithm.agent import DiffCPSAgent  # noqa: E402
from diffcps_ray.algorithm.buffer import TransitionBuffer  # noqa: E402
from diffcps_ray.algorithm.config import DiffCPSSettings  # noqa: E402

SHAPES = {
    "hopper": {"obs_dim": 11, "act_dim": 3, "max_q_backup": False},
    "antmaze": {"obs_dim": 29, "act_dim": 8, "max_q_backup": True},
}


def _buffer(obs_dim: int, act_dim: int, device: str, n: int = 20_000) -> TransitionBuffer:
    rng = np.random.default_rng(0)
    data = {
        "obs": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "new_obs": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "terminateds": rng.random(n) < 0.01,
    }
    return TransitionBuffer(data, device=device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _time_block(
    update, buffer: TransitionBuffer, generator, steps: int, device: str, clock: str = "wall"
) -> float:
    """Steps per second over ``steps`` consecutive updates (batch sampling included)."""
    now = CLOCKS[clock]
    _sync(device)
    start = now()
    for _ in range(steps):
        update(buffer.sample(256, generator))
    _sync(device)
    return steps / (now() - start)


def bench_shape(
    shape: str,
    threads: int,
    steps: int,
    repeats: int,
    warmup: int,
    device: str,
    reference: bool,
    clock: str = "wall",
) -> dict[str, float]:
    torch.set_num_threads(threads)
    spec = SHAPES[shape]
    settings = DiffCPSSettings(max_q_backup=spec["max_q_backup"])
    buffer = _buffer(spec["obs_dim"], spec["act_dim"], device)
    agent = DiffCPSAgent(spec["obs_dim"], spec["act_dim"], settings, device=device)
    contenders = {"diffcps": agent.update}
    if reference:
        torch.manual_seed(0)
        ref = ReferenceAgent(spec["obs_dim"], spec["act_dim"], settings, device=device)
        contenders["reference"] = ref.update
    generator = torch.Generator(device=device).manual_seed(0)
    for update in contenders.values():
        _time_block(update, buffer, generator, warmup, device)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):  # interleaved blocks: load changes hit both contenders
        for name, update in contenders.items():
            rates[name].append(_time_block(update, buffer, generator, steps, device, clock))
    result = {"diffcps": statistics.median(rates["diffcps"])}
    if reference:
        result["reference"] = statistics.median(rates["reference"])
        ratios = [a / b for a, b in zip(rates["diffcps"], rates["reference"], strict=True)]
        result["speedup"] = statistics.median(ratios)
    print(f"{shape} threads={threads}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()),
          file=sys.stderr, flush=True)  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch thread counts (default: 1 and 2)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per contender")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--shape", choices=[*SHAPES, "both"], default="both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-reference", action="store_true", help="time the agent only")
    parser.add_argument(
        "--clock", choices=list(CLOCKS), default="wall",
        help="wall: elapsed time; cpu: this process's CPU time, which other processes' load "
        "barely affects at 1 thread (at 2 threads it also counts OpenMP spinning)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda was given but torch sees no CUDA device.")
    threads = args.threads or [1, 2]
    shapes = list(SHAPES) if args.shape == "both" else [args.shape]
    report: dict[str, dict] = {}
    for shape in shapes:
        steps = args.steps or (30 if shape == "hopper" else 10)
        for n in threads:
            result = bench_shape(
                shape, n, steps, args.repeats, args.warmup, args.device,
                not args.no_reference, args.clock,
            )  # fmt: skip
            key = f"threads_{n}"
            report.setdefault(shape, {})[key] = round(result["diffcps"], 2)
            if "reference" in result:
                report.setdefault("reference", {}).setdefault(shape, {})[key] = round(
                    result["reference"], 2
                )
                report.setdefault("speedup", {}).setdefault(shape, {})[key] = round(
                    result["speedup"], 3
                )
    # the agent's figures first, then the reference, the speedups and the conditions
    report = {k: report[k] for k in (*shapes, "reference", "speedup") if k in report}
    report["meta"] = {
        "batch_size": 256, "T": 5, "device": args.device, "torch": torch.__version__,
        "repeats": args.repeats, "clock": args.clock,
        "unit": "training steps per second (median of interleaved blocks)",
    }  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
