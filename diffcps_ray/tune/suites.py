"""Sweep suites: tune_configs/<suite>.yaml (and ablations/<name>.yaml), validated.

A suite names its tasks, where their data comes from, the search space over kappa and
lambda_clip per task, and three budgets (smoke, demo, paper). Per-task base settings are
not retyped here: they come from ``DiffCPSSettings.for_task`` (the table in docs/method.md);
the YAML only holds overrides on top of them.

Search ranges are log-uniform. A range may be written absolutely (``low``/``high``) or
around the paper's value (``factor: F`` -> [paper / F, paper * F]). lambda_clip is 0 in
the paper for every locomotion task, which no log-uniform range contains, so such a range
sets ``zero_floor: true``: its ``low`` end stands for "no clip" and any sampled value at or
below ``low`` is run as exactly 0 (``effective_value``), and the paper's 0 is evaluated as
``low``. The rest of the range is searched as usual.

An ablation file (``ablations/*.yaml``) names a ``base`` suite (tasks, data, budgets) and a
``grid`` of settings to run at the paper's kappa and lambda_clip, each value x seeds.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from diffcps_ray.errors import ConfigError, validation_sentence
from diffcps_ray.tune.trial_config import zero_floor_value

BUDGETS = ("smoke", "demo", "paper")
SEARCHED = ("kappa", "lambda_clip")
DATA_SOURCES = ("generate", "d4rl")
METRIC = "evaluation/normalized_score"
MODE = "max"  # the score is maximised


@dataclass(frozen=True)
class SearchRange:
    """A log-uniform range for one hyperparameter of one task."""

    name: str
    low: float
    high: float
    paper: float
    zero_floor: bool = False

    @property
    def first_point(self) -> float:
        """The paper's value as a point inside the range (0 becomes the floor)."""
        if self.zero_floor and self.paper <= self.low:
            return self.low
        return self.paper

    @property
    def zero_below(self) -> float:
        """Sampled values at or below this run as 0 (0: no zero floor)."""
        return self.low if self.zero_floor else 0.0

    def effective_value(self, value: float) -> float:
        """The value a trial runs with: at or below a zero floor means exactly 0."""
        return zero_floor_value(float(value), self.zero_below)


# The file's own types are pydantic dataclasses: the YAML is checked against their fields
# (scalars as YAML wrote them, no "5" for 5; unknown keys rejected); load_suite turns the
# first error into one sentence naming the file, the key and the allowed values.
_FILE = ConfigDict(extra="forbid")
Int = Annotated[int, Field(strict=True)]
Real = Annotated[float, Field(strict=True)]  # an int is a number too
Count = Annotated[Int, Field(ge=1)]


@pydantic.dataclasses.dataclass(frozen=True, config=_FILE)
class PhaseBudget:
    """Length and evaluation protocol of the trials of one phase."""

    iterations: Count
    steps_per_iteration: Count
    eval_interval: Count
    eval_episodes: Count

    @property
    def gradient_steps(self) -> int:
        return self.iterations * self.steps_per_iteration

    @model_validator(mode="after")
    def _last_iteration_is_evaluated(self) -> PhaseBudget:
        if self.iterations % self.eval_interval:
            raise ValueError(
                f"iterations ({self.iterations}) must be a multiple of eval_interval "
                f"({self.eval_interval}) so that the last iteration is evaluated"
            )
        return self


@pydantic.dataclasses.dataclass(frozen=True, config=_FILE)
class Budget:
    """One named budget: search size, ASHA rungs, both phases' lengths, seeds, data size.

    A new per-budget setting is one more field here (with a default, so that older suite
    files still load).
    """

    num_samples: Count
    grace_period: Count
    reduction_factor: Annotated[Int, Field(ge=2)]
    search: PhaseBudget
    confirm: PhaseBudget
    seeds: Count
    transitions: Count | None = None  # generated suites: transitions per task
    # The budget's key in the file, set by the loader (exclude: not a key of the file).
    name: Annotated[str, Field(exclude=True)] = ""

    @model_validator(mode="after")
    def _rungs_fit_the_search(self) -> Budget:
        if self.grace_period > self.search.iterations:
            raise ValueError(
                f"grace_period ({self.grace_period}) exceeds the search phase's "
                f"{self.search.iterations} iterations"
            )
        if self.grace_period % self.search.eval_interval:
            # ASHA compares scores at its rungs; between evaluations the score is stale.
            raise ValueError(
                f"grace_period ({self.grace_period}) must be a multiple of the search "
                f"phase's eval_interval ({self.search.eval_interval})"
            )
        return self


@dataclass(frozen=True)
class TaskEntry:
    """One task of a suite: settings overrides, search ranges, optional behaviour score."""

    name: str
    overrides: dict[str, Any]
    search: dict[str, SearchRange]
    behaviour_score: float | None = None

    @property
    def paper_point(self) -> dict[str, float]:
        """The paper's values as trials run with them (the floor means exactly 0)."""
        return {k: r.effective_value(r.first_point) for k, r in self.search.items()}


@dataclass(frozen=True)
class Suite:
    """A validated suite (or ablation, where ``grid`` is set and ``search`` is skipped)."""

    name: str
    description: str
    path: Path
    data_source: str
    data_seed: int
    tasks: dict[str, TaskEntry]
    budgets: dict[str, Budget]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    base: str | None = None
    ablation_seeds: int | None = None

    @property
    def is_ablation(self) -> bool:
        return bool(self.grid)

    def budget(self, name: str) -> Budget:
        if name not in self.budgets:
            raise ConfigError(
                f"Suite {self.name!r} has no budget {name!r}: expected one of "
                f"{', '.join(self.budgets)}."
            )
        return self.budgets[name]

    def select_tasks(self, names: list[str] | None) -> list[TaskEntry]:
        """The tasks to run, in the suite's order; ``names`` picks a subset."""
        if not names:
            return list(self.tasks.values())
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise ConfigError(
                f"Task {unknown[0]!r} is not in suite {self.name!r}, whose tasks are "
                f"{', '.join(self.tasks)}."
            )
        return [self.tasks[n] for n in self.tasks if n in names]


# --- discovery -----------------------------------------------------------------------------


def config_dir() -> Path:
    """The top-level tune_configs/ directory, found as a package: an install (pip install .
    on every node) ships the suites too. Looked up only here, so that Ray workers importing
    this module's types need no suite files."""
    return Path(str(importlib.resources.files("tune_configs")))


def suite_path(name: str) -> Path:
    """tune_configs/<name>.yaml, or its ablations/<name>.yaml; a path works too."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    for directory in (config_dir(), config_dir() / "ablations"):
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    raise ConfigError(
        f"Unknown suite {name!r}: expected one of {', '.join(list_suites())} "
        f"(files in {config_dir()})."
    )


def list_suites() -> list[str]:
    names = sorted(p.stem for p in config_dir().glob("*.yaml"))
    return names + sorted(p.stem for p in (config_dir() / "ablations").glob("*.yaml"))


def load_suite(name: str, base_override: str | None = None) -> Suite:
    """Read and validate a suite by name (or path). ``base_override`` re-bases an ablation."""
    path = suite_path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}.") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level.")
    where = str(path)
    if "grid" in raw:
        base_name = base_override or raw.get("base")
        if not isinstance(base_name, str):
            raise ConfigError(f"{where}: an ablation needs 'base', the name of a suite.")
        if base_name == name:
            raise ConfigError(f"{where}: an ablation cannot be its own base.")
        base = load_suite(base_name)
        if base.is_ablation:
            raise ConfigError(f"{where}: base {base_name!r} is itself an ablation.")
        return _load_ablation(raw, path, base, rebased=base_override is not None)
    if base_override is not None:
        raise ConfigError(f"--base applies only to ablation suites, and {name!r} is not one.")
    return _load_suite(raw, path)


# --- parsing -------------------------------------------------------------------------------


@pydantic.dataclasses.dataclass(config=_FILE)
class _RangeFile:
    low: Annotated[Real, Field(gt=0)] | None = None
    high: Annotated[Real, Field(gt=0)] | None = None
    factor: Real | None = None
    zero_floor: Annotated[bool, Field(strict=True)] = False


_Ranges = dict[Literal[SEARCHED], _RangeFile]


@pydantic.dataclasses.dataclass(config=_FILE)
class _TaskFile:
    overrides: dict[str, Any] = field(default_factory=dict)
    search: _Ranges = field(default_factory=dict)
    behaviour_score: Real | None = None


@pydantic.dataclasses.dataclass(config=_FILE)
class _DataFile:
    source: Literal[DATA_SOURCES]
    seed: Int = 0


@pydantic.dataclasses.dataclass(config=_FILE)
class _BudgetsFile:
    smoke: Budget
    demo: Budget
    paper: Budget


@pydantic.dataclasses.dataclass(config=_FILE)
class _SuiteFile:
    suite: str
    data: _DataFile
    tasks: Annotated[dict[str, _TaskFile | None], Field(min_length=1)]
    budgets: _BudgetsFile
    search: _Ranges = field(default_factory=dict)
    description: str = ""


@pydantic.dataclasses.dataclass(config=_FILE)
class _AblationFile:
    suite: str
    base: str
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]]
    tasks: list[str] | None = None
    seeds: Count | None = None
    description: str = ""

    @model_validator(mode="after")
    def _one_setting(self) -> _AblationFile:
        if len(self.grid) != 1:
            raise ValueError(f"'grid' must vary exactly one setting, not {len(self.grid)}")
        return self


def _read(kind: type, raw: dict[str, Any], path: Path) -> Any:
    """``raw`` checked against the file type ``kind``; its name must match the file's."""
    try:
        parsed = TypeAdapter(kind).validate_python(raw)
    except ValidationError as error:
        raise ConfigError(f"{path}: {validation_sentence(error, kind)}.") from None
    if parsed.suite != path.stem:
        raise ConfigError(
            f"{path}: 'suite' is {parsed.suite!r} but the file is named {path.stem!r}."
        )
    return parsed


def _load_suite(raw: dict[str, Any], path: Path) -> Suite:
    where = str(path)
    parsed: _SuiteFile = _read(_SuiteFile, raw, path)
    tasks = {
        task: _load_task(task, entry or _TaskFile(), parsed.search, f"{where} task {task}")
        for task, entry in parsed.tasks.items()
    }
    budgets = {}
    for name in BUDGETS:
        budget = getattr(parsed.budgets, name)
        if budget.name:
            raise ConfigError(f"{where}: unknown key 'name' in budgets.{name} (a budget is "
                              "named by its key).")  # fmt: skip
        budget = dataclasses.replace(budget, name=name)
        if parsed.data.source == "generate" and budget.transitions is None:
            raise ConfigError(
                f"{where}: budgets.{name} needs 'transitions' (a generated suite's data size)."
            )
        budgets[name] = budget
    return Suite(
        name=parsed.suite,
        description=parsed.description.strip(),
        path=path,
        data_source=parsed.data.source,
        data_seed=parsed.data.seed,
        tasks=tasks,
        budgets=budgets,
    )


def _load_task(task: str, raw: _TaskFile, default_search: _Ranges, where: str) -> TaskEntry:
    from diffcps_ray.envs.tasks import get_task

    get_task(task)  # unknown names fail here with close matches
    for key in SEARCHED:
        if key in raw.overrides:
            raise ConfigError(f"{where}: {key!r} is searched; set its range under 'search'.")
    settings = base_settings(task, raw.overrides, where)
    ranges = {**default_search, **raw.search}
    search = {}
    for key in SEARCHED:
        if key not in ranges:
            raise ConfigError(f"{where}: no search range for {key!r}.")
        search[key] = _search_range(key, ranges[key], paper_value(settings, key), where)
    return TaskEntry(
        name=task,
        overrides=dict(raw.overrides),
        search=search,
        behaviour_score=raw.behaviour_score,
    )


def _search_range(key: str, raw: _RangeFile, paper: float, where: str) -> SearchRange:
    if raw.factor is not None:
        if raw.factor <= 1.0 or paper <= 0.0:
            raise ConfigError(
                f"{where}: {key!r} 'factor' needs a factor above 1 and a positive paper "
                f"value (got factor {raw.factor}, paper {paper}); give 'low' and 'high' "
                "instead."
            )
        low, high = paper / raw.factor, paper * raw.factor
    elif raw.low is None or raw.high is None:
        raise ConfigError(f"{where}: {key!r} needs 'low' and 'high', or 'factor'.")
    else:
        low, high = raw.low, raw.high
    if not (0.0 < low < high and math.isfinite(high)):
        raise ConfigError(f"{where}: {key!r} needs 0 < low < high, got {low} and {high}.")
    search_range = SearchRange(key, low, high, paper, raw.zero_floor)
    first = search_range.first_point
    if not low * (1 - 1e-9) <= first <= high * (1 + 1e-9):
        raise ConfigError(
            f"{where}: the paper's {key} {paper} lies outside [{low}, {high}]"
            + ("; set zero_floor: true to run 0 as the range's floor." if paper == 0 else ".")
        )
    return search_range


def _load_ablation(raw: dict[str, Any], path: Path, base: Suite, rebased: bool) -> Suite:
    where = str(path)
    parsed: _AblationFile = _read(_AblationFile, raw, path)
    # A re-based ablation runs on all of its new base's tasks (the listed ones are the
    # paper's, of the original base).
    tasks = base.select_tasks(None if rebased else parsed.tasks)
    for task in tasks:
        for key, values in parsed.grid.items():
            if key in SEARCHED:
                continue
            for value in values:
                base_settings(task.name, {**task.overrides, key: value}, f"{where} grid")
    return Suite(
        name=parsed.suite,
        description=parsed.description.strip(),
        path=path,
        data_source=base.data_source,
        data_seed=base.data_seed,
        tasks={t.name: t for t in tasks},
        budgets=base.budgets,
        grid=dict(parsed.grid),
        base=base.name,
        ablation_seeds=parsed.seeds,
    )


# --- per-task settings (docs/method.md's table lives in diffcps_ray.algorithm) --------------

# Our names for the searched settings -> DiffCPSSettings field names.
SETTINGS_FIELDS = {"kappa": "kappa", "lambda_clip": "lambda_clip"}


def base_settings(task: str, overrides: dict[str, Any], where: str) -> Any:
    """DiffCPSSettings.for_task(task, **overrides), with a plain error for a bad override."""
    from diffcps_ray.algorithm.config import DiffCPSSettings

    renamed = {SETTINGS_FIELDS.get(k, k): v for k, v in overrides.items()}
    try:
        settings = DiffCPSSettings.for_task(task, **renamed)
        settings.validate()
    except TypeError as error:
        raise ConfigError(f"{where}: bad settings override ({error}).") from error
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error
    return settings


def paper_value(settings: Any, key: str) -> float:
    return float(getattr(settings, SETTINGS_FIELDS[key]))


# --- budgets as recorded data ---------------------------------------------------------------


def budget_settings(budget: Budget) -> dict[str, Any]:
    """A budget as plain data (experiment.json's ``budget_settings``)."""
    settings = dataclasses.asdict(budget)
    settings.pop("name", None)
    return settings


def budget_from_settings(settings: dict[str, Any]) -> Budget:
    """The Budget a record's ``budget_settings`` describe."""
    values = dict(settings)
    for phase in ("search", "confirm"):
        values[phase] = PhaseBudget(**values[phase])
    return Budget(**values)


def changed_keys(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two nested dicts."""
    changes = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += changed_keys(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old} -> {new}")
    return changes
