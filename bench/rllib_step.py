"""DiffCPS gradient steps/s through the full RLlib path vs the bare agent; evaluation cost.

Training (per shape, batch 256, T=5, one torch thread everywhere):
- hopper-shaped (obs 11, act 3, no max-Q backup; hopper-medium-v2's settings) and
  AntMaze-shaped (obs 29, act 8, max-Q backup with 10 next actions;
  antmaze-umaze-diverse-v2's settings), on random transitions written as real Parquet
  shards with the data layer's writer;
- "rllib": ``Algorithm.train()`` wall time per iteration of N gradient steps (Ray Data
  ingestion happens in a warm-up iteration; the local learner runs in this process);
- "bare": ``TransitionBuffer.sample`` + ``DiffCPSAgent.update`` in a plain loop;
- the two are timed in alternating blocks, so machine load hits both alike; figures are
  medians over blocks, the fraction is the median of per-block ratios (target >= 0.8);
- sampling: the share of the step time spent drawing minibatches (target < 5%), both
  as the learner measures it and in the bare loop.

Evaluation: ``evaluate_policy`` on antmaze-umaze-v2 (E episodes, batched envs, batched
inference through the RLModule) vs stepping the bare simulator with random actions for
the same number of env steps; the ratio says what the policy costs on top of physics.

    python bench/rllib_step.py                         # both shapes + 100 AntMaze episodes
    python bench/rllib_step.py --shape hopper --steps 100 --blocks 2 --eval-episodes 0
    python bench/rllib_step.py --shape none --eval-num-envs 100   # evaluation only

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from diffcps_ray.runtime import set_torch_threads, thread_env  # noqa: E402

SHAPES = {
    "hopper": {"task": "hopper-medium-v2", "obs_dim": 11, "act_dim": 3},
    "antmaze": {"task": "antmaze-umaze-diverse-v2", "obs_dim": 29, "act_dim": 8},
}
DEFAULT_STEPS = {"hopper": 150, "antmaze": 40}
EVAL_TASK = "antmaze-umaze-v2"


def random_transitions(obs_dim: int, act_dim: int, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    episode_length = 1000
    return {
        "obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": rng.standard_normal(n, dtype=np.float32),
        "new_obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
        "terminateds": rng.random(n) < 0.01,
        "truncateds": (np.arange(n) % episode_length) == episode_length - 1,
        "eps_id": np.arange(n) // episode_length,
        "t": np.arange(n) % episode_length,
    }


def bare_block(agent, buffer, steps: int) -> tuple[float, float]:
    """(steps/s, sampling share of the step time) of a plain sample + update loop."""
    sample_time = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = buffer.sample(agent.settings.batch_size, agent.generator)
        sample_time += time.perf_counter() - t0
        agent.update(batch)
    elapsed = time.perf_counter() - start
    return steps / elapsed, sample_time / elapsed


def bench_shape(name: str, steps: int, blocks: int, rows: int, root: Path) -> dict:
    from diffcps_ray.algorithm.agent import DiffCPSAgent
    from diffcps_ray.algorithm.buffer import TransitionBuffer
    from diffcps_ray.data.shards import load_transitions, write_shards
    from diffcps_ray.rllib import DiffCPSConfig

    shape = SHAPES[name]
    task = shape["task"]
    task_dir = write_shards(
        random_transitions(shape["obs_dim"], shape["act_dim"], rows, seed=0), task, root,
        "generated", overwrite=True,
    )  # fmt: skip
    config = (
        DiffCPSConfig()
        .environment(task=task)
        .offline_data(data_root=root)
        .training(gradient_steps_per_iteration=steps)
        .evaluation(eval_interval=0)
        .debugging(seed=0, log_level="ERROR")
    )
    settings = config.get_diffcps_settings()
    algo = config.build_algo()
    agent = DiffCPSAgent(shape["obs_dim"], shape["act_dim"], settings, seed=0)
    buffer = TransitionBuffer(load_transitions(task_dir), reward_tune=settings.reward_tune)
    try:
        algo.train()  # warm-up: Ray Data reads and the learner materialises its shard
        bare_block(agent, buffer, max(5, steps // 10))
        rllib_rates, inner_rates, bare_rates, fractions = [], [], [], []
        sample_shares, bare_sample_shares = [], []
        for _ in range(blocks):
            start = time.perf_counter()
            result = algo.train()
            rllib_rate = steps / (time.perf_counter() - start)
            learner = result["learners"]["default_policy"]
            bare_rate, bare_share = bare_block(agent, buffer, steps)
            rllib_rates.append(rllib_rate)
            inner_rates.append(float(learner["steps_per_s"]))
            sample_shares.append(float(learner["sample_time_fraction"]))
            bare_rates.append(bare_rate)
            bare_sample_shares.append(bare_share)
            fractions.append(rllib_rate / bare_rate)
    finally:
        algo.stop()
    return {
        "task_settings": task,
        "obs_dim": shape["obs_dim"],
        "act_dim": shape["act_dim"],
        "max_q_backup": settings.max_q_backup,
        "steps_per_iteration": steps,
        "blocks": blocks,
        "rllib_steps_per_s": statistics.median(rllib_rates),
        "rllib_learner_inner_steps_per_s": statistics.median(inner_rates),
        "bare_steps_per_s": statistics.median(bare_rates),
        "rllib_fraction_of_bare": statistics.median(fractions),
        "meets_80pct": statistics.median(fractions) >= 0.8,
        "rllib_sampling_share": statistics.median(sample_shares),
        "bare_sampling_share": statistics.median(bare_sample_shares),
        "meets_sampling_5pct": statistics.median(sample_shares) < 0.05,
    }


def bench_evaluation(episodes: int, num_envs: int | None) -> dict:
    """evaluate_policy through the RLModule vs the bare simulator, same env steps."""
    from ray.rllib.core.columns import Columns

    from diffcps_ray.envs.evaluate import clear_env_cache, evaluate_policy
    from diffcps_ray.envs.tasks import get_task
    from diffcps_ray.rllib import DiffCPSConfig

    spec = get_task(EVAL_TASK)
    module = DiffCPSConfig().environment(task=EVAL_TASK).get_rl_module_spec().build()

    def act(obs: np.ndarray) -> np.ndarray:
        batch = {Columns.OBS: torch.as_tensor(obs)}
        return module.forward_inference(batch)[Columns.ACTIONS].numpy()

    start = time.perf_counter()
    result = evaluate_policy(spec, act, episodes, seed=0, num_envs=num_envs)
    eval_time = time.perf_counter() - start
    total_steps = round(result["episode_length_mean"] * episodes)

    env = spec.make_env(seed=0)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    start = time.perf_counter()
    env.reset(seed=0)
    for _ in range(total_steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
        if terminated or truncated:
            env.reset()
    bare_time = time.perf_counter() - start
    env.close()
    clear_env_cache()
    return {
        "task": EVAL_TASK,
        "episodes": episodes,
        "num_envs": num_envs or "evaluate_policy default",
        "env_steps": total_steps,
        "evaluate_policy_s": eval_time,
        "bare_simulator_s": bare_time,
        "ratio": eval_time / bare_time,
        "policy_calls_per_s": total_steps / eval_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "both", "none"], default="both",
                        help="training shapes to time (none: evaluation only)")
    parser.add_argument("--steps", type=int, default=None,
                        help="gradient steps per iteration/block (default 150 hopper, 40 AntMaze)")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=100, help="0 skips evaluation")
    parser.add_argument("--eval-num-envs", type=int, default=None)
    args = parser.parse_args()

    set_torch_threads(1)
    import logging

    import ray
    import ray.data

    for logger in ("ray", "ray.data", "ray.rllib"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.init(address="local", num_cpus=(os.cpu_count() or 2) + 2, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": thread_env(1)})
    report: dict = {}
    try:
        with tempfile.TemporaryDirectory(prefix="diffcps-bench-") as tmp:
            shapes = {"both": list(SHAPES), "none": []}.get(args.shape, [args.shape])
            for name in shapes:
                steps = args.steps or DEFAULT_STEPS[name]
                report[name] = bench_shape(name, steps, args.blocks, args.rows, Path(tmp))
                print(f"{name}: {json.dumps(report[name])}", file=sys.stderr, flush=True)
        if args.eval_episodes:
            report["evaluation"] = bench_evaluation(args.eval_episodes, args.eval_num_envs)
            print(f"evaluation: {json.dumps(report['evaluation'])}", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
    report["meta"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "note": "shared machine: compare figures within one run only",
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
