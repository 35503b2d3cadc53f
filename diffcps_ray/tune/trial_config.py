"""One trial's config, typed: what it trains (task, kappa, lambda_clip, seed, settings) and
how long and where (its run settings). Tune carries it as the flat dict of ``to_dict``, which
is what params.json, the analysis and experiment.json read. Nothing here imports Ray.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from diffcps_ray.tune.record import Phase

if TYPE_CHECKING:  # suites.py imports this module: its types are for annotations only
    from diffcps_ray.tune.suites import PhaseBudget, TaskEntry

# How close to the floor of a zero-floor range counts as the floor (float round trips).
_FLOOR_TOLERANCE = 1e-9


def zero_floor_value(value: float, zero_below: float) -> float:
    """A sampled value as a trial runs it: the floor of a zero-floor range means exactly 0.

    A log-uniform range cannot reach 0, so a suite that wants "no clip" among the choices
    (the paper's locomotion lambda_clip) sets ``zero_floor`` and its floor stands for 0;
    ``zero_below`` is that floor (0 for ranges without one).
    """
    return 0.0 if value <= zero_below * (1 + _FLOOR_TOLERANCE) else value


@dataclass(frozen=True)
class RunSettings:
    """A trial's length, evaluation protocol, data and resources."""

    data_root: str
    iterations: int
    steps_per_iteration: int
    eval_interval: int
    eval_episodes: int
    lambda_clip_zero_below: float = 0.0
    num_gpus: float = 0.0
    torch_threads: int = 1


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial runs with."""

    phase: Phase
    task: str
    kappa: float
    lambda_clip: float  # as sampled; see effective_lambda_clip
    seed: int
    run: RunSettings
    settings: dict[str, Any] = field(default_factory=dict)  # the task's overrides
    variant: dict[str, Any] | None = None  # ablations: the varied setting

    @property
    def effective_lambda_clip(self) -> float:
        return zero_floor_value(self.lambda_clip, self.run.lambda_clip_zero_below)

    def with_resources(self, num_gpus: float, torch_threads: int) -> TrialConfig:
        return replace(self, run=replace(self.run, num_gpus=num_gpus,
                                         torch_threads=torch_threads))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["phase"] = str(self.phase)
        if self.variant is None:
            del data["variant"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        run = dict(data["run"])
        return cls(
            phase=Phase(data["phase"]), task=str(data["task"]), kappa=float(data["kappa"]),
            lambda_clip=float(data["lambda_clip"]), seed=int(data["seed"]),
            run=RunSettings(**run), settings=dict(data.get("settings") or {}),
            variant=data.get("variant"),
        )


def effective_lambda_clip(config: dict[str, Any]) -> float | None:
    """The lambda_clip a trial config (Tune's dict) runs with; None where it has none."""
    if config.get("lambda_clip") is None:
        return None
    zero_below = float((config.get("run") or {}).get("lambda_clip_zero_below", 0.0))
    return zero_floor_value(float(config["lambda_clip"]), zero_below)


# --- the configs of a sweep's phases -------------------------------------------------------


def run_settings(phase: PhaseBudget, zero_below: float, data_root: str, gpus_per_trial: float,
                 cpus_per_trial: float) -> RunSettings:
    """A phase's trial length and evaluation, the data and the trial's devices."""
    return RunSettings(
        data_root=data_root,
        iterations=phase.iterations,
        steps_per_iteration=phase.steps_per_iteration,
        eval_interval=phase.eval_interval,
        eval_episodes=phase.eval_episodes,
        lambda_clip_zero_below=zero_below,
        num_gpus=gpus_per_trial,
        torch_threads=max(1, int(cpus_per_trial)),
    )


def confirm_configs(task: TaskEntry, chosen: dict[str, float], run: RunSettings,
                    seeds: int) -> list[TrialConfig]:
    """The chosen kappa and lambda_clip (as sampled) with seeds 1..N."""
    return [TrialConfig(phase=Phase.CONFIRM, task=task.name, kappa=chosen["kappa"],
                        lambda_clip=chosen["lambda_clip"], seed=seed, run=run,
                        settings=dict(task.overrides))
            for seed in range(1, seeds + 1)]


def ablation_configs(task: TaskEntry, grid: dict[str, list[Any]], run: RunSettings,
                     seeds: int) -> list[TrialConfig]:
    """Each grid value at the paper's kappa and lambda_clip, with seeds 1..N.

    Grid values are taken literally: no zero floor.
    """
    ((key, values),) = grid.items()
    run = replace(run, lambda_clip_zero_below=0.0)
    configs = []
    for value in values:
        for seed in range(1, seeds + 1):
            kappa = task.search["kappa"].paper
            lambda_clip = task.search["lambda_clip"].paper
            settings = dict(task.overrides)
            if key == "kappa":
                kappa = value
            elif key == "lambda_clip":
                lambda_clip = value
            else:
                settings[key] = value
            configs.append(TrialConfig(phase=Phase.ABLATION, task=task.name, kappa=kappa,
                                       lambda_clip=lambda_clip, seed=seed, run=run,
                                       settings=settings, variant={key: value}))
    return configs
