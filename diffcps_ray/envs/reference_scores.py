"""Measure PointMaze reference scores: random policy (min) and noiseless scripted expert (max).

    python -m diffcps_ray.envs.reference_scores [--episodes N] [--seed S] [--out PATH]

Both use the evaluation protocol of evaluate_policy (random start and goal cells, the
task's episode length); the table is written to diffcps_ray/envs/reference_scores.json,
which tasks.py reads for the PointMaze tasks' ref_min_score / ref_max_score.
"""

from __future__ import annotations

import json
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
