"""Measure PointMaze reference scores: random policy (min) and noiseless scripted expert (max).

    python -m diffcps_ray.envs.reference_scores [--episodes N] [--seed S] [--out PATH]
    python -m diffcps_ray.envs.reference_scores --behaviour TASK [TASK ...] [--episodes N]

Both use the evaluation protocol of evaluate_policy (random start and goal cells, the
task's episode length); the table is written to diffcps_ray/envs/reference_scores.json,
which tasks.py reads for the PointMaze tasks' ref_min_score / ref_max_score.

``--behaviour`` instead measures the generated data's behaviour policy (the noisy,
detouring expert of data/generate.py) under the same protocol and prints its return and
normalised score per task (the suites' ``behaviour_score``); it writes nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from diffcps_ray.cli import PlainArgumentParser, non_negative_int, positive_int, run_main
from diffcps_ray.envs.evaluate import evaluate_policy
from diffcps_ray.envs.pointmaze import PointMazeExpert
from diffcps_ray.envs.tasks import REFERENCE_SCORES_PATH, get_task, list_tasks

FORMAT_VERSION = 1


def measure(task_name: str, episodes: int, seed: int) -> dict[str, float]:
    """Random and expert returns of one PointMaze task under the evaluation protocol."""
    spec = get_task(task_name)
    rng = np.random.default_rng(seed)

    def random_policy(obs: np.ndarray) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(len(obs), spec.act_dim))

    random_result = evaluate_policy(spec, random_policy, episodes, seed)
    expert_result = evaluate_policy(spec, PointMazeExpert(spec.env_name), episodes, seed)
    return {
        "ref_min_score": round(random_result["episode_return_mean"], 3),
        "ref_max_score": round(expert_result["episode_return_mean"], 3),
        "random_return_std": round(random_result["episode_return_std"], 3),
        "expert_return_std": round(expert_result["episode_return_std"], 3),
        "random_success_rate": random_result["success_rate"],
        "expert_success_rate": expert_result["success_rate"],
        "max_episode_steps": spec.max_episode_steps,
    }


def measure_behaviour(task_name: str, episodes: int, seed: int) -> dict[str, float]:
    """The data's behaviour policy under the evaluation protocol: return and score."""
    from diffcps_ray.data.generate import PointMazeBehaviour

    spec = get_task(task_name)
    # One env: the behaviour keeps a detour per episode (see PointMazeBehaviour).
    result = evaluate_policy(spec, PointMazeBehaviour(spec, seed), episodes, seed, num_envs=1)
    return_se = result["episode_return_std"] / np.sqrt(episodes)
    span = spec.ref_max_score - spec.ref_min_score
    return {
        "return_mean": round(result["episode_return_mean"], 2),
        "return_std": round(result["episode_return_std"], 2),
        "return_se": round(float(return_se), 2),
        "normalized_score": round(result["normalized_score"], 2),
        "normalized_score_se": round(float(100.0 * return_se / span), 2),
        "success_rate": result["success_rate"],
        "episodes": episodes,
        "seed": seed,
    }


def build_parser() -> PlainArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m diffcps_ray.envs.reference_scores",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--episodes", type=positive_int, default=300,
                        help="episodes per policy (default 300)")
    parser.add_argument("--seed", type=non_negative_int, default=12345,
                        help="seed of the episodes and the random policy (default 12345)")
    parser.add_argument("--out", type=Path, default=REFERENCE_SCORES_PATH,
                        help="where the table goes (default: the package's "
                             "reference_scores.json)")
    parser.add_argument("--behaviour", nargs="+", metavar="TASK", default=None,
                        help="measure the generated data's behaviour policy on these "
                             "PointMaze tasks instead (prints, writes nothing)")
    return parser



def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.behaviour:
        pointmaze = list_tasks("pointmaze")
        unknown = [t for t in args.behaviour if t not in pointmaze]
        if unknown:
            print(f"--behaviour takes PointMaze tasks ({', '.join(pointmaze)}), got "
                  f"{unknown[0]!r}.", file=sys.stderr)
            return 2
        for name in args.behaviour:
            start = time.perf_counter()
            row = measure_behaviour(name, args.episodes, args.seed)
            print(
                f"{name}: behaviour return {row['return_mean']:.1f} +- {row['return_se']:.1f} "
                f"(standard error; episode spread {row['return_std']:.1f}), normalised "
                f"{row['normalized_score']:.1f} +- {row['normalized_score_se']:.1f}, success "
                f"{row['success_rate']:.1%} over {args.episodes} episodes, seed {args.seed} "
                f"({time.perf_counter() - start:.0f} s)", flush=True,
            )
        return 0
    table: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "command": "python -m diffcps_ray.envs.reference_scores "
        f"--episodes {args.episodes} --seed {args.seed}",
        "protocol": "evaluate_policy: random start and goal cells, sparse reward within "
        "0.45 of the goal, no termination; min = uniform random actions, max = scripted "
        "expert (BFS over cells, PD 10 * pos_err - 1 * vel, clipped) without noise",
        "episodes": args.episodes,
        "seed": args.seed,
        "tasks": {},
    }
    for name in list_tasks("pointmaze"):
        start = time.perf_counter()
        table["tasks"][name] = measure(name, args.episodes, args.seed)  # type: ignore[index]
        print(f"{name}: {table['tasks'][name]} ({time.perf_counter() - start:.1f} s)")  # type: ignore[index]
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
