"""Export the policies of a sweep's confirmation trials (and of a train run) as policy dirs.

Layout: ``<experiment>/policies/<task>/seed_<k>/best/`` (the best-of-run checkpoint) and
``.../final/`` (the last one), each an exported policy directory (``policy.json`` +
``weights.pt``, see ``diffcps_ray.policy.core``). A train run exports ``<out>/policy/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffcps_ray.policy.core import Policy, PolicyError
from diffcps_ray.policy.sources import (
    POLICIES_DIR,
    checkpoint_policy,
    confirm_checkpoints,
    confirm_context,
    local_path,
)
from diffcps_ray.tune.record import ExperimentRecord


def policy_dir(experiment_dir: Path, task: str, seed: Any, kind: str) -> Path:
    """Where one confirmation trial's best or final policy goes."""
    return experiment_dir / POLICIES_DIR / task / f"seed_{seed}" / kind


def export_sweep_policies(
    experiment_dir: str | Path,
    record: ExperimentRecord,
    log: Callable[[str], None] = print,
    tasks: list[str] | None = None,
) -> list[Path]:
    """Export every confirmation trial's best and final checkpoint; return the directories.

    ``record``: the experiment's record (its confirm rows name the checkpoints, see
    ``confirm_checkpoints``). ``tasks``: only these tasks (default: all). A storage URI
    other than ``file://`` is skipped with a log line (export from a local copy instead).
    A checkpoint that cannot be read is logged and skipped; the others are still exported.
    """
    text = str(experiment_dir)
    if "://" in text and not text.startswith("file://"):
        log(f"[policies] {text} is not a local directory; not exporting policies (run "
            f"python -m diffcps_ray.evaluate on a local copy to use them).")
        return []
    root = local_path(text)
    written = []
    for item in confirm_checkpoints(root, record, log):
        if tasks is not None and item.task not in tasks:
            continue
        target = policy_dir(root, item.task, item.seed, item.kind)
        try:
            policy = checkpoint_policy(item.path, confirm_context(root, item))
            policy.provenance["checkpoint"] = _relative(item.path, root)
            policy.provenance.pop("trial", None)
            policy.provenance["trial_path"] = item.row.path
            policy.provenance["experiment"] = root.name
            policy.save(target)
        except (PolicyError, OSError) as error:
            log(f"[policies] {item.task} seed {item.seed} {item.kind}: not exported ({error})")
            continue
        score = "no recorded score" if policy.score is None else f"score {policy.score:.1f}"
        ended = "" if item.row.complete else f"; the run ended {item.run_status}"
        log(f"[policies] {item.task} seed {item.seed} {item.kind} ({score}, iteration "
            f"{policy.provenance.get('iteration')}{ended}) -> {target}")
        written.append(target)
    return written


def export_train_policy(run_dir: Path, checkpoint: Path, summary: dict[str, Any]) -> Path:
    """Export a train run's final checkpoint to ``<run_dir>/policy/``."""
    from diffcps_ray.policy.sources import TRAIN_POLICY_DIR, CheckpointContext

    context = CheckpointContext(
        task=summary.get("task"),
        data_root=summary.get("data_root"),
        eval_env=summary.get("eval_env"),
        score=summary.get("final_score"),
        iteration=summary.get("iterations"),
        provenance={"kind": "train", "run": str(run_dir), "seed": summary.get("seed"),
                    "checkpoint_kind": "final"},
    )
    policy: Policy = checkpoint_policy(checkpoint, context)
    policy.provenance["checkpoint"] = _relative(checkpoint, run_dir)
    return policy.save(run_dir / TRAIN_POLICY_DIR)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
