"""experiment.json as a typed, versioned record: what a sweep ran, chose, kept and exported.

The sweep writes it (tune/sweep.py); the analysis (analysis/experiment.py), the policy
loader (policy/sources.py) and ``evaluate`` read it, all through :class:`ExperimentRecord`.
Its JSON layout is documented in docs/interfaces.md. Nothing here imports Ray.

Format 3 (this one) over format 2: statuses are fixed words (enums below), each
confirmation task has a status and a reason, a trial's ``checkpoints.best`` is its
best-scoring evaluated checkpoint, and the resolved budget is recorded so that a resumed
sweep runs the budget it started with.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from diffcps_ray.errors import DiffCPSError, first_line
from diffcps_ray.results import finite_number

FORMAT_VERSION = 3
RECORD_NAME = "experiment.json"


class RecordError(DiffCPSError):
    """experiment.json is missing, unreadable, of another format or inconsistent."""


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"  # a signal stopped it: --resume continues
    DONE = "done"  # every trial finished and the policies were exported


class TaskStatus(StrEnum):
    WAITING = "waiting"  # a confirmation waiting for its task's search
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"  # nothing to run (no successful search trial)
    FAILED = "failed"  # every trial of the phase failed


class TrialStatus(StrEnum):
    TERMINATED = "TERMINATED"  # ran its whole budget
    STOPPED_EARLY = "STOPPED_EARLY"  # ASHA stopped it on purpose: complete
    ERROR = "ERROR"  # failed for good (NaN, or out of retries)
    INTERRUPTED = "INTERRUPTED"  # a signal stopped it: --resume continues it


COMPLETE_STATUSES = frozenset({TrialStatus.TERMINATED, TrialStatus.STOPPED_EARLY})


class Phase(StrEnum):
    SEARCH = "search"
    CONFIRM = "confirm"
    ABLATION = "ablation"


class CheckpointKind(StrEnum):
    BEST = "best"  # the trial's best-scoring evaluated checkpoint
    FINAL = "final"  # its latest checkpoint


@dataclass
class CheckpointRef:
    """A kept checkpoint: its path (relative to the experiment), iteration and score."""

    path: str
    iteration: int
    score: float | None


@dataclass
class TrialRow:
    """One trial: what it ran, how it ended, what it scored and which checkpoints it kept."""

    phase: Phase
    task: str
    trial_id: str
    path: str  # the trial directory, relative to the experiment directory
    kappa: float | None
    lambda_clip: float | None  # as run: 0 for a zero-floor range's floor
    seed: int | None
    status: TrialStatus
    iterations: int = 0
    score: float | None = None  # the last evaluation's normalised score
    best_score: float | None = None  # best-of-run over its evaluations
    score_std: float | None = None  # episode spread of the last evaluation (ddof 1)
    eval_episodes: int | None = None
    error: str | None = None
    variant: dict[str, Any] | None = None  # ablation trials: the varied setting
    study_trial: int | None = None  # search trials: the Optuna trial number of the proposal
    checkpoints: dict[CheckpointKind, CheckpointRef | None] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status in COMPLETE_STATUSES

    def checkpoint(self, kind: CheckpointKind) -> CheckpointRef | None:
        return self.checkpoints.get(kind)


@dataclass
class SearchTask:
    """One task's search: its study, its ranges and what it chose."""

    status: TaskStatus
    paper: dict[str, float]
    ranges: dict[str, list[float]]
    optuna_storage: str
    study_name: str
    selection: str | None = None  # why the chosen trial was chosen
    best: dict[str, Any] | None = None  # trial_id, path, kappa, lambda_clip, score
    best_raw: dict[str, float] | None = None  # the chosen config as sampled


@dataclass
class TaskState:
    """A confirmation or ablation task's status, with the reason when it produced nothing."""

    status: TaskStatus
    reason: str | None = None


@dataclass
class SearchPhase:
    metric: str
    mode: str
    budget: dict[str, Any]
    tasks: dict[str, SearchTask] = field(default_factory=dict)
    dir: str = "sweep"


@dataclass
class RunPhase:
    """The confirmation (best config x seeds) or an ablation grid (values x seeds)."""

    budget: dict[str, Any]
    seeds: list[int]
    tasks: dict[str, TaskState] = field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None  # ablations only
    status: TaskStatus = TaskStatus.RUNNING
    dir: str = "sweep"


@dataclass
class ExperimentRecord:
    """The whole of experiment.json."""

    suite: str
    budget: str
    command: str
    options: dict[str, Any]  # the sweep's options (tune/sweep.py SweepOptions)
    budget_settings: dict[str, Any]  # the resolved budget the sweep runs (resume keeps it)
    behaviour_scores: dict[str, float] = field(default_factory=dict)
    status: ExperimentStatus = ExperimentStatus.RUNNING
    search: SearchPhase | None = None
    confirm: RunPhase | None = None
    ablation: RunPhase | None = None
    trials: list[TrialRow] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    # -- queries --------------------------------------------------------------------------

    @property
    def run_phase(self) -> RunPhase | None:
        """The phase whose trials are the results: the ablation grid or the confirmation."""
        return self.ablation if self.ablation is not None else self.confirm

    def trials_of(self, phase: Phase, task: str | None = None) -> list[TrialRow]:
        return [row for row in self.trials
                if row.phase == phase and (task is None or row.task == task)]

    def replace_trials(self, phase: Phase, task: str, rows: list[TrialRow]) -> None:
        """Swap in one phase's rows of one task, keeping every other row."""
        self.trials = [row for row in self.trials
                       if not (row.phase == phase and row.task == task)] + rows

    def tasks(self) -> list[str]:
        return sorted({row.task for row in self.trials})

    # -- JSON -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        phases = {name: data.pop(name) for name in ("search", "confirm", "ablation")}
        data["phases"] = {name: value for name, value in phases.items() if value is not None}
        return _plain(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = RECORD_NAME) -> ExperimentRecord:
        """Validate and type a parsed experiment.json; one sentence when it is not one."""
        if not isinstance(data, dict):
            raise RecordError(f"{source} is not a JSON object.")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise RecordError(
                f"{source} is experiment.json format {version!r}, written by another version "
                f"of diffcps-ray; this one reads format {FORMAT_VERSION}: run the sweep again "
                f"with this version (a new --name), or read it with the version that wrote it."
            )
        try:
            phases = data.get("phases") or {}
            return cls(
                suite=str(data["suite"]),
                budget=str(data["budget"]),
                command=str(data.get("command", "")),
                options=dict(data.get("options") or {}),
                budget_settings=dict(data.get("budget_settings") or {}),
                behaviour_scores={str(k): float(v) for k, v in
                                  (data.get("behaviour_scores") or {}).items()},
                status=ExperimentStatus(data.get("status", ExperimentStatus.RUNNING)),
                search=_search_phase(phases.get("search")),
                confirm=_run_phase(phases.get("confirm")),
                ablation=_run_phase(phases.get("ablation")),
                trials=[_trial_row(row) for row in data.get("trials") or []],
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RecordError(f"{source} is not a valid experiment record ({_reason(error)}).") \
                from None

    @classmethod
    def load(cls, path: str | Path) -> ExperimentRecord:
        """Read ``path`` (experiment.json, or the experiment directory holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / RECORD_NAME
        if not path.is_file():
            raise RecordError(
                f"{path.parent} is not an experiment directory: it has no {RECORD_NAME} "
                f"(python -m diffcps_ray.tune writes one).")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RecordError(f"{path} is not readable JSON ({error}).") from None
        return cls.from_dict(data, str(path))


def _plain(value: Any) -> Any:
    """asdict's output as JSON values: enums as their words, non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy / torch scalars
        return _plain(value.item())
    return value


def _reason(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"missing key {error}"
    return first_line(error)


def _int_or_none(value: Any) -> int | None:
    number = finite_number(value)
    return None if number is None else int(number)


def _checkpoint(value: Any) -> CheckpointRef | None:
    if value is None:
        return None
    return CheckpointRef(path=str(value["path"]), iteration=int(value["iteration"]),
                         score=finite_number(value.get("score")))


def _trial_row(data: dict[str, Any]) -> TrialRow:
    return TrialRow(
        phase=Phase(data["phase"]),
        task=str(data["task"]),
        trial_id=str(data["trial_id"]),
        path=str(data["path"]),
        kappa=finite_number(data.get("kappa")),
        lambda_clip=finite_number(data.get("lambda_clip")),
        seed=_int_or_none(data.get("seed")),
        status=TrialStatus(data["status"]),
        iterations=int(data.get("iterations") or 0),
        score=finite_number(data.get("score")),
        best_score=finite_number(data.get("best_score")),
        score_std=finite_number(data.get("score_std")),
        eval_episodes=_int_or_none(data.get("eval_episodes")),
        error=data.get("error"),
        variant=data.get("variant"),
        study_trial=_int_or_none(data.get("study_trial")),
        checkpoints={CheckpointKind(kind): _checkpoint(ref)
                     for kind, ref in (data.get("checkpoints") or {}).items()},
    )


def _search_phase(data: dict[str, Any] | None) -> SearchPhase | None:
    if data is None:
        return None
    return SearchPhase(
        metric=str(data["metric"]), mode=str(data["mode"]), budget=dict(data["budget"]),
        dir=str(data.get("dir", "sweep")),
        tasks={task: SearchTask(
            status=TaskStatus(entry["status"]), paper=dict(entry["paper"]),
            ranges=dict(entry["ranges"]), optuna_storage=str(entry["optuna_storage"]),
            study_name=str(entry["study_name"]), selection=entry.get("selection"),
            best=entry.get("best"), best_raw=entry.get("best_raw"),
        ) for task, entry in (data.get("tasks") or {}).items()},
    )


def _run_phase(data: dict[str, Any] | None) -> RunPhase | None:
    if data is None:
        return None
    return RunPhase(
        budget=dict(data["budget"]), seeds=[int(s) for s in data["seeds"]],
        tasks={task: TaskState(TaskStatus(entry["status"]), entry.get("reason"))
               for task, entry in (data.get("tasks") or {}).items()},
        grid=data.get("grid"), status=TaskStatus(data.get("status", TaskStatus.RUNNING)),
        dir=str(data.get("dir", "sweep")),
    )
