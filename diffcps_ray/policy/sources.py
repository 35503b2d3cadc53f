"""Find the policy (or policies) a PATH names, without Ray and without the dataset.

PATH may be:

- an exported policy directory (``policy.json`` + ``weights.pt``);
- a ``python -m diffcps_ray.train`` output directory (``summary.json``; its exported
  ``policy/`` or else its ``checkpoint/``);
- a sweep experiment directory (``experiment.json``): the best confirmed policy of each
  task, from the exported ``policies/`` where present, else from the confirmation trials'
  checkpoints;
- a Tune trial directory (``params.json`` + ``checkpoint_*/``): its newest checkpoint;
- an RLlib Algorithm checkpoint, or a Tune checkpoint directory holding one (``algorithm/``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from diffcps_ray.atomic import is_leftover
from diffcps_ray.errors import read_json_object
from diffcps_ray.policy.checkpoints import algorithm_dir, read_checkpoint
from diffcps_ray.policy.core import (
    POLICY_FILE,
    Policy,
    PolicyError,
    read_policy_dir,
    read_policy_json,
)
from diffcps_ray.results import finite_number
from diffcps_ray.tune.record import (
    CheckpointKind,
    CheckpointRef,
    ExperimentRecord,
    Phase,
    RecordError,
    TrialRow,
)
from diffcps_ray.tune.store import trial_id_of

EXPERIMENT_FILE = "experiment.json"
SUMMARY_FILE = "summary.json"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
TRAIN_POLICY_DIR = "policy"
TRAIN_CHECKPOINT_DIR = "checkpoint"
POLICIES_DIR = "policies"  # <experiment>/policies/<task>/seed_<k>/{best,final}/


class NotAPolicyPathError(PolicyError):
    """PATH is none of the things a policy can be loaded from."""


class UnknownPolicyTaskError(PolicyError):
    """A task the experiment (or run) does not have."""


@dataclass
class PolicyRef:
    """A policy found at a PATH, loaded on demand."""

    task: str
    label: str  # where it is, for log lines
    score: float | None
    loader: Callable[[str, int], Policy] = field(repr=False)
    available: bool = True  # False: the experiment has the task but no policy for it

    def load(self, device: str = "cpu", seed: int = 0) -> Policy:
        return self.loader(device, seed)


def local_path(path: str | Path) -> Path:
    """A local path for PATH (``file://`` URIs included); other URIs are refused."""
    text = str(path)
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme != "file":
            raise NotAPolicyPathError(
                f"{text} is a {parsed.scheme}:// URI; copy the directory to this machine "
                f"and pass its local path."
            )
        return Path(unquote(parsed.path))
    return Path(text).expanduser()


def load_policy(path: str | Path, task: str | None = None, device: str = "cpu",
                seed: int = 0) -> Policy:
    """The policy at PATH (for an experiment: the best confirmed one of ``task``).

    Never starts Ray and never reads the dataset. ``policy.act(obs)`` takes a numpy batch
    ``(B, obs_dim)`` and returns ``(B, act_dim)`` actions; ``seed`` seeds its candidate
    draws (``policy.seed(s)`` restarts them).
    """
    refs = find_policies(path, task)
    if len(refs) > 1:
        raise PolicyError(
            f"{path} holds policies for {len(refs)} tasks ({', '.join(refs)}): pass task= to "
            f"choose one."
        )
    (ref,) = refs.values()
    return ref.load(device, seed)


def find_policies(path: str | Path, task: str | None = None) -> dict[str, PolicyRef]:
    """Task -> the policy PATH holds for it (only ``task`` when given)."""
    root = local_path(path)
    if not root.is_dir():
        raise NotAPolicyPathError(
            f"{path} is not a run, experiment or policy directory (no such directory)."
        )
    if (root / POLICY_FILE).is_file():
        ref = _exported_ref(root)
        refs = {ref.task: ref}
    elif (root / EXPERIMENT_FILE).is_file():
        refs = experiment_policies(root)
    elif (root / SUMMARY_FILE).is_file():
        refs = _train_run_refs(root)
    elif algorithm_dir(root) is not None:
        ref = _checkpoint_ref(algorithm_dir(root), _context_for_checkpoint(root))
        refs = {ref.task: ref}
    elif (root / PARAMS_FILE).is_file() and newest_checkpoint(root) is not None:
        ref = _checkpoint_ref(newest_checkpoint(root), _trial_context(root))
        refs = {ref.task: ref}
    else:
        raise NotAPolicyPathError(
            f"{path} is not a run, experiment or policy directory: it has no policy.json, "
            f"experiment.json, summary.json or checkpoint."
        )
    if task is not None:
        if task not in refs:
            raise UnknownPolicyTaskError(
                f"{path} has no task {task!r}; it has {', '.join(sorted(refs))}."
            )
        refs = {task: refs[task]}
    return refs


# --- exported policies ---------------------------------------------------------------------


def _exported_ref(directory: Path) -> PolicyRef:
    meta = read_policy_json(directory)  # refuses a newer format version
    return PolicyRef(
        task=str(meta.get("task")),
        label=str(directory),
        score=finite_number(meta.get("score")),
        loader=lambda device, seed: read_policy_dir(directory, device, seed),
    )


# --- checkpoints ---------------------------------------------------------------------------


@dataclass
class CheckpointContext:
    """What a checkpoint's surroundings say about it (task, data, scores, provenance)."""

    task: str | None = None
    data_root: str | None = None
    eval_env: dict[str, Any] | None = None
    steps_per_iteration: int | None = None
    score: float | None = None  # known from the run's records; else looked up by iteration
    iteration: int | None = None
    results: list[dict[str, Any]] | None = None  # the trial's result.json lines
    provenance: dict[str, Any] = field(default_factory=dict)


def checkpoint_policy(checkpoint: Path, context: CheckpointContext, device: str = "cpu",
                      seed: int = 0) -> Policy:
    """A Policy from an Algorithm checkpoint (or a Tune checkpoint holding one)."""
    algo = algorithm_dir(checkpoint)
    if algo is None:
        raise NotAPolicyPathError(f"{checkpoint} is not an RLlib Algorithm checkpoint.")
    contents = read_checkpoint(algo)
    task = contents.task or context.task
    if task is None:
        raise PolicyError(f"{checkpoint} does not say which task it was trained on.")
    iteration = context.iteration
    if iteration is None and context.steps_per_iteration:
        iteration = contents.num_gradient_steps // context.steps_per_iteration
    score = context.score
    if score is None and iteration is not None and context.results:
        score = evaluated_score_at(context.results, iteration)
    eval_env = context.eval_env
    if eval_env is None and context.data_root:
        eval_env = recorded_eval_env(context.data_root, task)
    provenance = {
        **context.provenance,
        "checkpoint": str(checkpoint),
        "iteration": iteration,
        "num_gradient_steps": contents.num_gradient_steps,
    }
    return Policy(
        task=task,
        obs_dim=contents.obs_dim,
        act_dim=contents.act_dim,
        settings=contents.settings,
        weights=contents.weights,
        eval_env=eval_env,
        score=score,
        provenance=provenance,
        device=device,
        seed=seed,
    )


def _checkpoint_ref(checkpoint: Path, context: CheckpointContext) -> PolicyRef:
    task = context.task
    if task is None:
        task = read_checkpoint(algorithm_dir(checkpoint) or checkpoint).task
    if task is None:
        raise PolicyError(f"{checkpoint} does not say which task it was trained on.")
    context.task = task
    return PolicyRef(
        task=task,
        label=str(checkpoint),
        score=context.score,
        loader=lambda device, seed: checkpoint_policy(checkpoint, context, device, seed),
    )


def newest_checkpoint(trial_dir: Path) -> Path | None:
    """The newest ``checkpoint_*`` of a Tune trial directory that holds an Algorithm."""
    found = [p for p in trial_dir.glob("checkpoint_*") if algorithm_dir(p) is not None]
    return max(found, key=lambda p: p.name) if found else None


def recorded_eval_env(data_root: str | Path, task: str) -> dict[str, Any] | None:
    """The evaluation env a task's data recorded (its manifest's ``eval_env``), if readable.

    Only the small manifest.json is read, never the shards; data that are gone give None.
    """
    path = Path(data_root).expanduser() / task / "manifest.json"
    try:
        record = json.loads(path.read_text()).get("eval_env")
    except (OSError, ValueError, AttributeError):
        return None
    return record if isinstance(record, dict) else None


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """A trial's result.json lines (torn or unreadable lines skipped)."""
    rows = []
    try:
        text = (trial_dir / RESULT_FILE).read_text(errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def evaluated_score_at(results: list[dict[str, Any]], iteration: int) -> float | None:
    """The score of the evaluation run at ``iteration``; None if none ran there.

    Results carry the last evaluation forward, so a score counts only where the number of
    evaluations went up at that iteration.
    """
    previous = 0.0
    for row in results:
        evaluation = row.get("evaluation") or {}
        count = finite_number(evaluation.get("num_evaluations")) or 0.0
        fresh = count > previous
        previous = max(previous, count)
        if row.get("training_iteration") == iteration:
            return finite_number(evaluation.get("normalized_score")) if fresh else None
    return None


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, PolicyError)


def _trial_context(trial_dir: Path, **provenance: Any) -> CheckpointContext:
    params = _read_json(trial_dir / PARAMS_FILE)
    run = params.get("run") or {}
    steps = run.get("steps_per_iteration")
    return CheckpointContext(
        task=params.get("task"),
        data_root=run.get("data_root"),
        steps_per_iteration=int(steps) if steps else None,
        results=read_results(trial_dir),
        provenance={
            "kind": "trial",
            "trial": str(trial_dir),
            "trial_id": trial_id_of(trial_dir.name),
            "phase": params.get("phase"),
            "seed": params.get("seed"),
            **provenance,
        },
    )


def _context_for_checkpoint(path: Path) -> CheckpointContext:
    """A bare checkpoint: its trial directory (Tune) or train run around it, if any."""
    for parent in (path.parent, path.parent.parent):
        if (parent / PARAMS_FILE).is_file():
            return _trial_context(parent)
        if (parent / SUMMARY_FILE).is_file():
            return _train_context(parent)
    return CheckpointContext(provenance={"kind": "checkpoint"})


# --- train runs ----------------------------------------------------------------------------


def _train_context(run_dir: Path) -> CheckpointContext:
    summary = _read_json(run_dir / SUMMARY_FILE)
    return CheckpointContext(
        task=summary.get("task"),
        data_root=summary.get("data_root"),
        eval_env=summary.get("eval_env"),
        score=finite_number(summary.get("final_score")),
        iteration=summary.get("iterations"),
        provenance={"kind": "train", "run": str(run_dir), "seed": summary.get("seed"),
                    "checkpoint_kind": "final"},
    )


def _train_run_refs(run_dir: Path) -> dict[str, PolicyRef]:
    if (run_dir / TRAIN_POLICY_DIR / POLICY_FILE).is_file():
        ref = _exported_ref(run_dir / TRAIN_POLICY_DIR)
    elif algorithm_dir(run_dir / TRAIN_CHECKPOINT_DIR) is not None:
        ref = _checkpoint_ref(run_dir / TRAIN_CHECKPOINT_DIR, _train_context(run_dir))
    else:
        raise NotAPolicyPathError(
            f"{run_dir} is a train run without a policy or checkpoint (did it finish?)."
        )
    return {ref.task: ref}


# --- sweep experiments ---------------------------------------------------------------------


@dataclass
class ConfirmCheckpoint:
    """One checkpoint of a confirmation trial (the best-of-run or the final one)."""

    task: str
    seed: int | None
    kind: CheckpointKind
    path: Path
    score: float | None
    iteration: int | None
    row: TrialRow

    @property
    def run_status(self) -> str:
        """How the trial ended: a best checkpoint of a trial that later failed is kept."""
        return str(self.row.status)


def exportable_checkpoints(record: ExperimentRecord) -> list[
        tuple[TrialRow, CheckpointKind, CheckpointRef]]:
    """The confirmation checkpoints that are results, as the record names them.

    A trial that failed after its best evaluation (a NaN later on) still has a best-of-run
    checkpoint with a known score: it is a result, kept and labelled by the trial's status.
    Its last checkpoint is not a final policy, so only finished trials give a ``final``.
    """
    found = []
    for row in record.trials_of(Phase.CONFIRM):
        for kind in CheckpointKind:
            entry = row.checkpoint(kind)
            if entry is None or (kind == CheckpointKind.FINAL and not row.complete):
                continue
            found.append((row, kind, entry))
    return found


def confirm_checkpoints(experiment_dir: Path, record: ExperimentRecord,
                        log: Callable[[str], None] | None = None) -> list[ConfirmCheckpoint]:
    """Every exportable checkpoint (``exportable_checkpoints``) that is on disk."""
    found = []
    for row, kind, entry in exportable_checkpoints(record):
        path = experiment_dir / entry.path
        if algorithm_dir(path) is None:
            if log:
                log(f"[policies] {row.task} seed {row.seed}: the {kind} checkpoint "
                    f"{path} is missing, skipping it.")
            continue
        found.append(ConfirmCheckpoint(
            task=row.task, seed=row.seed, kind=kind, path=path, score=entry.score,
            iteration=entry.iteration, row=row,
        ))  # fmt: skip
    return found


def confirm_context(experiment_dir: Path, item: ConfirmCheckpoint) -> CheckpointContext:
    """The checkpoint's trial context, with the record's iteration and score."""
    trial_dir = experiment_dir / item.row.path
    extra = {"experiment": str(experiment_dir), "checkpoint_kind": str(item.kind),
             "run_status": item.run_status}
    if (trial_dir / PARAMS_FILE).is_file():
        context = _trial_context(trial_dir, **extra)
    else:
        context = CheckpointContext(task=item.task, provenance={"kind": "trial", **extra})
    context.provenance.update(trial_id=item.row.trial_id, seed=item.seed, phase="confirm")
    context.task = item.task
    if item.iteration is not None:
        context.iteration = int(item.iteration)
    if item.score is not None:
        context.score = item.score
    return context


def exported_policies(experiment_dir: Path) -> dict[str, list[Path]]:
    """Task -> its exported policy directories under ``<experiment>/policies/``."""
    found: dict[str, list[Path]] = {}
    for policy_json in sorted((experiment_dir / POLICIES_DIR).glob(f"*/*/*/{POLICY_FILE}")):
        if is_leftover(policy_json.parent.name):  # an export being written, or a killed one's
            continue
        found.setdefault(policy_json.parents[2].name, []).append(policy_json.parent)
    return found


def experiment_policies(experiment_dir: Path) -> dict[str, PolicyRef]:
    """Task -> the best confirmed policy (highest recorded score) of that task."""
    try:
        record = ExperimentRecord.load(experiment_dir)
    except RecordError as error:
        raise PolicyError(str(error)) from None
    refs: dict[str, PolicyRef] = {}
    exported = exported_policies(experiment_dir)
    for task, directories in exported.items():
        refs[task] = _best(_exported_ref(d) for d in directories)
    by_task: dict[str, list[ConfirmCheckpoint]] = {}
    for item in confirm_checkpoints(experiment_dir, record):
        if item.task not in refs:
            by_task.setdefault(item.task, []).append(item)
    for task, items in by_task.items():
        candidates = []
        for item in items:
            context = confirm_context(experiment_dir, item)
            candidates.append(PolicyRef(
                task=task, label=str(item.path), score=context.score,
                loader=lambda device, seed, p=item.path, c=context: checkpoint_policy(
                    p, c, device, seed),
            ))  # fmt: skip
        refs[task] = _best(candidates)
    if not refs:
        tasks = record.tasks()
        raise PolicyError(
            f"{experiment_dir} has no confirmed policy"
            + (f" for {', '.join(tasks)}" if tasks else "")
            + ": its confirmation phase has not finished."
        )
    # Tasks of the experiment without a confirmed policy are named in errors, not dropped.
    for task in record.tasks():
        refs.setdefault(task, _missing_ref(experiment_dir, task))
    return dict(sorted(refs.items()))


def _missing_ref(experiment_dir: Path, task: str) -> PolicyRef:
    def fail(device: str, seed: int) -> Policy:
        raise PolicyError(f"{experiment_dir} has no confirmed policy for {task}.")

    return PolicyRef(task=task, label="(none)", score=None, loader=fail, available=False)


def _best(refs: Iterable[PolicyRef]) -> PolicyRef:
    refs = list(refs)
    return max(refs, key=lambda r: -math.inf if r.score is None else r.score)


