"""Sweep suites: diffcps_ray/tune_configs/<suite>.yaml (and ablations/<name>.yaml) read and validated.

A suite names its tasks, where their data comes from, the search space over kappa and
lambda_clip per task, and three budgets (smoke, demo, paper). Per-task base settings are
not retyped here: they come from ``DiffCPSSettings.for_task`` (algorithm-spec.md's table);
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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from diffcps_ray.errors import ConfigError

# Package data: a non-editable install (pip install .) on every node ships the suites.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "tune_configs"
ABLATION_DIR = CONFIG_DIR / "ablations"
BUDGETS = ("smoke", "demo", "paper")
SEARCHED = ("kappa", "lambda_clip")
DATA_SOURCES = ("generate", "d4rl")
METRIC = "evaluation/normalized_score"


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

    def effective_value(self, value: float) -> float:
        """The value a trial runs with: at or below the floor means exactly 0."""
        if self.zero_floor and value <= self.low * (1.0 + 1e-9):
            return 0.0
        return float(value)


@dataclass(frozen=True)
class PhaseBudget:
    """Length and evaluation protocol of the trials of one phase."""

    iterations: int
    steps_per_iteration: int
    eval_interval: int
    eval_episodes: int

    @property
    def gradient_steps(self) -> int:
        return self.iterations * self.steps_per_iteration


@dataclass(frozen=True)
class Budget:
    """One named budget: search size, ASHA rungs, both phases' lengths, seeds, data size."""

    name: str
    num_samples: int
    grace_period: int
    reduction_factor: int
    search: PhaseBudget
    confirm: PhaseBudget
    seeds: int
    transitions: int | None = None  # generated suites: transitions per task


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


def suite_path(name: str) -> Path:
    """diffcps_ray/tune_configs/<name>.yaml, or its ablations/<name>.yaml; a path works too."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    for directory in (CONFIG_DIR, ABLATION_DIR):
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    raise ConfigError(
        f"Unknown suite {name!r}: expected one of {', '.join(list_suites())} "
        f"(files in {CONFIG_DIR})."
    )


def list_suites() -> list[str]:
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    return names + sorted(p.stem for p in ABLATION_DIR.glob("*.yaml"))


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
        base_name = base_override or _require(raw, "base", str, where)
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


def _require(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: missing key {key!r}.")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}: {key!r} has the wrong type ({type(value).__name__}).")
    return value


def _check_keys(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigError(
            f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})."
        )


def _positive_int(raw: dict[str, Any], key: str, where: str) -> int:
    value = _require(raw, key, int, where)
    if value < 1:
        raise ConfigError(f"{where}: {key!r} must be at least 1, got {value}.")
    return value


def _suite_name(raw: dict[str, Any], path: Path, keys: set[str]) -> str:
    """The file's 'suite' after checking its top-level keys; it must match the file name."""
    _check_keys(raw, keys, str(path))
    name = _require(raw, "suite", str, str(path))
    if name != path.stem:
        raise ConfigError(f"{path}: 'suite' is {name!r} but the file is named {path.stem!r}.")
    return name


def _load_suite(raw: dict[str, Any], path: Path) -> Suite:
    where = str(path)
    name = _suite_name(raw, path, {"suite", "description", "data", "tasks", "search", "budgets"})
    data = _require(raw, "data", dict, where)
    _check_keys(data, {"source", "seed"}, f"{where} data")
    source = _require(data, "source", str, f"{where} data")
    if source not in DATA_SOURCES:
        raise ConfigError(f"{where}: data source must be one of {DATA_SOURCES}, got {source!r}.")
    default_search = raw.get("search", {})
    tasks_raw = _require(raw, "tasks", dict, where)
    if not tasks_raw:
        raise ConfigError(f"{where}: 'tasks' is empty.")
    tasks = {
        task: _load_task(task, entry or {}, default_search, f"{where} task {task}")
        for task, entry in tasks_raw.items()
    }
    budgets_raw = _require(raw, "budgets", dict, where)
    budgets = {
        b: _load_budget(b, budgets_raw.get(b), f"{where} budget {b}", source) for b in BUDGETS
    }
    return Suite(
        name=name,
        description=str(raw.get("description", "")).strip(),
        path=path,
        data_source=source,
        data_seed=int(data.get("seed", 0)),
        tasks=tasks,
        budgets=budgets,
    )


def _load_task(
    task: str, raw: dict[str, Any], default_search: dict[str, Any], where: str
) -> TaskEntry:
    from diffcps_ray.envs.tasks import get_task

    get_task(task)  # unknown names fail here with close matches
    _check_keys(raw, {"overrides", "search", "behaviour_score"}, where)
    overrides = dict(raw.get("overrides") or {})
    for key in SEARCHED:
        if key in overrides:
            raise ConfigError(f"{where}: {key!r} is searched; set its range under 'search'.")
    settings = base_settings(task, overrides, where)
    search_raw = {**default_search, **(raw.get("search") or {})}
    _check_keys(search_raw, set(SEARCHED), f"{where} search")
    search = {}
    for key in SEARCHED:
        if key not in search_raw:
            raise ConfigError(f"{where}: no search range for {key!r}.")
        search[key] = _load_range(key, search_raw[key], paper_value(settings, key), where)
    behaviour = raw.get("behaviour_score")
    return TaskEntry(
        name=task,
        overrides=overrides,
        search=search,
        behaviour_score=None if behaviour is None else float(behaviour),
    )


def _load_range(key: str, raw: Any, paper: float, where: str) -> SearchRange:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the range for {key!r} must be a mapping.")
    _check_keys(raw, {"low", "high", "factor", "zero_floor"}, f"{where} {key}")
    zero_floor = bool(raw.get("zero_floor", False))
    if "factor" in raw:
        factor = float(raw["factor"])
        if factor <= 1.0 or paper <= 0.0:
            raise ConfigError(
                f"{where}: {key!r} 'factor' needs a factor above 1 and a positive paper "
                f"value (got factor {factor}, paper {paper}); give 'low' and 'high' instead."
            )
        low, high = paper / factor, paper * factor
    else:
        if "low" not in raw or "high" not in raw:
            raise ConfigError(f"{where}: {key!r} needs 'low' and 'high', or 'factor'.")
        low, high = float(raw["low"]), float(raw["high"])
    if not (0.0 < low < high and math.isfinite(high)):
        raise ConfigError(f"{where}: {key!r} needs 0 < low < high, got {low} and {high}.")
    search_range = SearchRange(key, low, high, paper, zero_floor)
    first = search_range.first_point
    if not low * (1 - 1e-9) <= first <= high * (1 + 1e-9):
        raise ConfigError(
            f"{where}: the paper's {key} {paper} lies outside [{low}, {high}]"
            + ("; set zero_floor: true to run 0 as the range's floor." if paper == 0 else ".")
        )
    return search_range


def _load_phase(raw: Any, where: str) -> PhaseBudget:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping.")
    _check_keys(raw, {"iterations", "steps_per_iteration", "eval_interval", "eval_episodes"}, where)
    phase = PhaseBudget(
        iterations=_positive_int(raw, "iterations", where),
        steps_per_iteration=_positive_int(raw, "steps_per_iteration", where),
        eval_interval=_positive_int(raw, "eval_interval", where),
        eval_episodes=_positive_int(raw, "eval_episodes", where),
    )
    if phase.iterations % phase.eval_interval:
        raise ConfigError(
            f"{where}: iterations ({phase.iterations}) must be a multiple of eval_interval "
            f"({phase.eval_interval}) so that the last iteration is evaluated."
        )
    return phase


def _load_budget(name: str, raw: Any, where: str, source: str) -> Budget:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: missing (every suite defines {', '.join(BUDGETS)}).")
    _check_keys(
        raw,
        {"num_samples", "grace_period", "reduction_factor", "search", "confirm", "seeds",
         "transitions"},
        where,
    )
    search = _load_phase(raw.get("search"), f"{where} search")
    budget = Budget(
        name=name,
        num_samples=_positive_int(raw, "num_samples", where),
        grace_period=_positive_int(raw, "grace_period", where),
        reduction_factor=_positive_int(raw, "reduction_factor", where),
        search=search,
        confirm=_load_phase(raw.get("confirm"), f"{where} confirm"),
        seeds=_positive_int(raw, "seeds", where),
        transitions=_positive_int(raw, "transitions", where) if "transitions" in raw else None,
    )
    if budget.reduction_factor < 2:
        raise ConfigError(f"{where}: 'reduction_factor' must be at least 2.")
    if budget.grace_period > search.iterations:
        raise ConfigError(
            f"{where}: grace_period ({budget.grace_period}) exceeds the search phase's "
            f"{search.iterations} iterations."
        )
    if budget.grace_period % search.eval_interval:
        # ASHA compares scores at its rungs; between evaluations the score is stale.
        raise ConfigError(
            f"{where}: grace_period ({budget.grace_period}) must be a multiple of the search "
            f"phase's eval_interval ({search.eval_interval})."
        )
    if source == "generate" and budget.transitions is None:
        raise ConfigError(f"{where}: a generated suite needs 'transitions' per budget.")
    return budget


def _load_ablation(raw: dict[str, Any], path: Path, base: Suite, rebased: bool) -> Suite:
    where = str(path)
    name = _suite_name(raw, path, {"suite", "description", "base", "tasks", "grid", "seeds"})
    grid_raw = _require(raw, "grid", dict, where)
    if len(grid_raw) != 1:
        raise ConfigError(f"{where}: 'grid' must vary exactly one setting.")
    grid: dict[str, list[Any]] = {}
    for key, values in grid_raw.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid values for {key!r} must be a non-empty list.")
        grid[key] = values
    # A re-based ablation runs on all of its new base's tasks (the listed ones are the
    # paper's, of the original base).
    names = None if rebased else raw.get("tasks")
    tasks = base.select_tasks(list(names) if names else None)
    for task in tasks:
        for key, values in grid.items():
            if key in SEARCHED:
                continue
            for value in values:
                base_settings(task.name, {**task.overrides, key: value}, f"{where} grid")
    seeds = raw.get("seeds")
    return Suite(
        name=name,
        description=str(raw.get("description", "")).strip(),
        path=path,
        data_source=base.data_source,
        data_seed=base.data_seed,
        tasks={t.name: t for t in tasks},
        budgets=base.budgets,
        grid=grid,
        base=base.name,
        ablation_seeds=int(seeds) if seeds is not None else None,
    )


# --- per-task settings (algorithm-spec.md's table lives in diffcps_ray.algorithm) -----------

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
