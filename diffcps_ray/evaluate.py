"""``python -m diffcps_ray.evaluate PATH``: evaluate trained policies again (no Ray, no data).

    python -m diffcps_ray.evaluate PATH [--task T] [--episodes N] [--seed S]
        [--num-envs N] [--device D] [--video FILE] [--video-episodes K]
        [--video-steps N] [--json]

PATH: an exported policy directory, a ``diffcps_ray.train`` output directory, a sweep
experiment directory (the best confirmed policy of each task, or of ``--task``), a Tune
trial directory or an RLlib checkpoint. Prints, per task, the normalised score with its
standard error over episodes and the raw return; ``--json`` makes the last line one JSON
object (several tasks: one object per task under ``"tasks"``). ``--video FILE`` (.mp4 or
.gif) renders the first episodes offscreen with MuJoCo (``MUJOCO_GL=egl`` unless set).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from diffcps_ray.cli import PlainArgumentParser, non_negative_int, positive_int, run_main
from diffcps_ray.errors import ConfigError

DEFAULT_SEED = 0
DEFAULT_VIDEO_EPISODES = 2
PROGRESS_INTERVAL_S = 2.0


def torch_device(text: str) -> str:
    """argparse type: a torch device name that this machine has."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a torch device (cpu, cuda, cuda:N, mps)") from None
    available = {
        "cpu": lambda: True,
        "cuda": lambda: torch.cuda.is_available()
        and (device.index is None or device.index < torch.cuda.device_count()),
        "mps": lambda: torch.backends.mps.is_available(),
    }
    if not available.get(device.type, lambda: False)():
        raise argparse.ArgumentTypeError(f"this machine has no {text} device")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = PlainArgumentParser(
        prog="python -m diffcps_ray.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("path", metavar="PATH",
                        help="a policy, train run, experiment or trial directory")
    parser.add_argument("--task", default=None, help="only this task (for an experiment)")
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help="episodes per task (default: the task's evaluation episodes)")
    parser.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED,
                        help=f"seeds the episodes' starts and the policy (default {DEFAULT_SEED})")
    parser.add_argument("--num-envs", type=positive_int, default=None,
                        help="simulators stepped together (default 10)")
    parser.add_argument("--device", type=torch_device, default="cpu",
                        help="torch device: cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument("--video", type=Path, default=None, metavar="FILE",
                        help="render episodes to FILE (.mp4 or .gif)")
    parser.add_argument("--video-episodes", type=positive_int, default=DEFAULT_VIDEO_EPISODES,
                        help=f"episodes in the video (default {DEFAULT_VIDEO_EPISODES}, at "
                             "most --episodes)")
    parser.add_argument("--video-steps", type=positive_int, default=None,
                        help="at most this many steps of each video episode (default: all)")
    parser.add_argument("--json", action="store_true",
                        help="end with one JSON line holding the results")
    return parser


class _Progress:
    """Episode counts on stderr while a task's episodes run (at most every 2 s)."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.last = time.monotonic()

    def __call__(self, finished: int, total: int) -> None:
        now = time.monotonic()
        if finished == total or now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            print(f"  {self.task}: {finished}/{total} episodes done", file=sys.stderr,
                  flush=True)


def standard_error(std: float, episodes: int) -> float | None:
    """Standard error of the mean score: sample std (ddof 1) / sqrt(episodes).

    ``std`` is evaluate_policy's spread over episodes (ddof 0); None for one episode.
    """
    if episodes < 2 or not math.isfinite(std):
        return None
    return std * math.sqrt(episodes / (episodes - 1)) / math.sqrt(episodes)


def evaluate_one(policy: Any, episodes: int, seed: int, num_envs: int | None) -> dict[str, Any]:
    from diffcps_ray.envs.evaluate import evaluate_policy

    spec = policy.task_spec()
    print(f"Evaluating {policy.task} ({policy.describe()}): {episodes} episodes in "
          f"{spec.eval_env_label}.", file=sys.stderr, flush=True)
    policy.seed(seed)
    start = time.perf_counter()
    result = evaluate_policy(spec, policy.act, episodes, seed, num_envs=num_envs,
                             progress=_Progress(policy.task))
    row = {
        "task": policy.task,
        "normalized_score": result["normalized_score"],
        "normalized_score_se": standard_error(result["normalized_score_std"], episodes),
        "normalized_score_std": result["normalized_score_std"],
        "episode_return_mean": result["episode_return_mean"],
        "episode_return_std": result["episode_return_std"],
        "episode_length_mean": result["episode_length_mean"],
        "episodes": episodes,
        "seed": seed,
        "recorded_score": policy.score,
        "source": policy.provenance,
        "time_s": time.perf_counter() - start,
    }
    if "success_rate" in result:
        row["success_rate"] = result["success_rate"]
    return row


def result_line(row: dict[str, Any]) -> str:
    se = row["normalized_score_se"]
    score = f"{row['normalized_score']:.1f}" + (f" +- {se:.1f}" if se is not None else "")
    parts = [
        f"{row['task']}: normalised score {score} (standard error over {row['episodes']} "
        f"episodes), return {row['episode_return_mean']:.1f} +- "
        f"{row['episode_return_std']:.1f} (std)"
    ]
    if "success_rate" in row:
        parts.append(f"success rate {100 * row['success_rate']:.0f}%")
    if row.get("recorded_score") is not None:
        parts.append(f"recorded score {row['recorded_score']:.1f}")
    return "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffcps_ray.runtime import set_torch_threads

    set_torch_threads(1)
    if args.video is not None:
        # Before anything imports mujoco: it picks its GL backend at import.
        os.environ.setdefault("MUJOCO_GL", "egl")
    from diffcps_ray.policy.sources import find_policies

    refs = find_policies(args.path, args.task)
    available = {task: ref for task, ref in refs.items() if ref.available}
    if not available:
        raise ConfigError(f"{args.path} has no policy to evaluate for {', '.join(refs)}.")
    if args.video is not None:
        from diffcps_ray.policy.video import check_rendering, check_video_path

        if len(available) > 1:
            raise ConfigError(
                f"--video renders one task, and {args.path} has {len(available)} "
                f"({', '.join(available)}): pass --task."
            )
        check_video_path(args.video)
        check_rendering()  # fail now, before any episode, if there is no GL backend
    for task in sorted(set(refs) - set(available)):
        print(f"{task}: no confirmed policy, skipped.", file=sys.stderr)

    rows = []
    for task, ref in available.items():
        policy = ref.load(args.device, args.seed)
        episodes = args.episodes or int(policy.settings.eval_episodes)
        row = evaluate_one(policy, episodes, args.seed, args.num_envs)
        if args.video is not None:
            from diffcps_ray.policy.video import record_video

            count = min(args.video_episodes, episodes)
            print(f"Rendering {count} episode(s) of {task} to {args.video}.", file=sys.stderr,
                  flush=True)
            policy.seed(args.seed)
            row["video"] = record_video(policy, policy.task_spec(), args.video, count,
                                        args.seed, max_steps=args.video_steps)
        print(result_line(row), flush=True)
        if "video" in row:
            video = row["video"]
            print(f"  video: {video['path']} ({video['frames']} frames at {video['fps']} fps)")
        rows.append(row)
    if args.json:
        payload = rows[0] if len(rows) == 1 else {"tasks": {r["task"]: r for r in rows}}
        from diffcps_ray.policy.core import jsonable

        print(json.dumps(jsonable(payload)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
