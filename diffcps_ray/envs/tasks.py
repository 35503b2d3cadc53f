"""Task registry: task name -> TaskSpec (dims, episode length, reference scores, data files).

One place answers "what is hopper-medium-v2?" for the data layer, the learner and the
evaluation: observation/action sizes, the evaluation episode length, D4RL's reference
scores, the reward tuning DiffCPS uses, the D4RL file name and the Minari dataset id.
Simulators are imported only inside ``make_env`` so that importing the registry stays cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffcps_ray.errors import UnknownTaskError

if TYPE_CHECKING:
    import gymnasium as gym

    from diffcps_ray.envs.recorded import RecordedEnv

FAMILIES = ("locomotion", "antmaze", "pointmaze")
REFERENCE_SCORES_PATH = Path(__file__).with_name("reference_scores.json")


@dataclass(frozen=True)
class TaskSpec:
    """Everything the other layers need to know about one task."""

    name: str
    family: str  # "locomotion" | "antmaze" | "pointmaze"
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    ref_min_score: float
    ref_max_score: float
    reward_tune: str = "none"  # "none" | "cql_antmaze"
    d4rl_filename: str | None = None
    minari_id: str | None = None
    # Which simulator: a gymnasium id for locomotion, the maze name ("umaze", "medium",
    # "large") for the mazes.
    env_name: str = ""
    # Minari dict observations are flattened by concatenating these keys in this order.
    minari_obs_keys: tuple[str, ...] = field(default_factory=tuple)
    # The env the task's data names for evaluation (a Minari dataset's eval_env_spec, via
    # the manifest); None: our own simulator above. Set with ``with_eval_env``.
    eval_env: RecordedEnv | None = None

    @property
    def is_goal_task(self) -> bool:
        """Goal-reaching tasks report a success rate besides the return."""
        return self.family in ("antmaze", "pointmaze")

    @property
    def scores_success(self) -> bool:
        """Score = success rate x 100 rather than the normalised return.

        Only in a recorded env: its rewards (e.g. Minari AntMaze's continuing sparse
        reward) need not be the 0/1 returns the task's reference scores assume.
        """
        return self.eval_env is not None and self.is_goal_task

    @property
    def eval_env_label(self) -> str:
        """Which env evaluates this task, in words (for log lines)."""
        if self.eval_env is not None:
            return f"{self.eval_env.describe()} (recorded with the data)"
        return f"the task's own {self.family} simulator ({self.env_name})"

    def with_eval_env(self, record: RecordedEnv | Mapping[str, Any] | None) -> TaskSpec:
        """This task evaluated in a recorded env (a manifest's ``eval_env``); None: self.

        The episode length becomes the record's time limit where it has one.
        """
        if record is None:
            return self
        from diffcps_ray.envs.recorded import RecordedEnv

        recorded = record if isinstance(record, RecordedEnv) else RecordedEnv.from_record(record)
        return dataclasses.replace(
            self,
            eval_env=recorded,
            max_episode_steps=recorded.max_episode_steps or self.max_episode_steps,
        )

    def make_env(self, seed: int | None = None) -> gym.Env:
        """A fresh evaluation env: flat float32 observations of obs_dim, actions in [-1, 1].

        ``seed`` seeds the env's first reset (later resets continue its RNG stream).
        """
        if self.eval_env is not None:
            from diffcps_ray.envs.recorded import make_recorded_env

            env = make_recorded_env(
                self.eval_env,
                self.obs_dim,
                self.act_dim,
                self.max_episode_steps,
                goal_task=self.is_goal_task,
            )
        elif self.family == "locomotion":
            from diffcps_ray.envs.locomotion import make_locomotion_env

            env = make_locomotion_env(self.env_name, self.max_episode_steps)
        elif self.family == "antmaze":
            from diffcps_ray.envs.antmaze import make_antmaze_env

            env = make_antmaze_env(self.env_name, self.max_episode_steps)
        elif self.family == "pointmaze":
            from diffcps_ray.envs.pointmaze import make_pointmaze_env

            env = make_pointmaze_env(self.env_name, self.max_episode_steps)
        else:  # pragma: no cover - the registry only holds known families
            raise UnknownTaskError(f"Task {self.name!r} has an unknown family {self.family!r}.")
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def normalized_score(self, episode_return: float) -> float:
        """D4RL's normalisation: 100 * (R - ref_min) / (ref_max - ref_min)."""
        return (
            100.0
            * (episode_return - self.ref_min_score)
            / (self.ref_max_score - self.ref_min_score)
        )


# --- locomotion (D4RL v2 datasets, evaluated on gymnasium v5 envs) -------------------------

# D4RL's reference returns (random policy, expert policy), shared by every v2 dataset.
_LOCOMOTION = {
    "halfcheetah": ("HalfCheetah-v5", 17, 6, -280.178953, 12135.0),
    "hopper": ("Hopper-v5", 11, 3, -20.272305, 3234.3),
    "walker2d": ("Walker2d-v5", 17, 6, 1.629008, 4592.3),
}
_LOCOMOTION_DATASETS = ("medium", "medium-replay", "medium-expert")


def _locomotion_tasks() -> list[TaskSpec]:
    tasks = []
    for env, (env_id, obs_dim, act_dim, ref_min, ref_max) in _LOCOMOTION.items():
        for dataset in _LOCOMOTION_DATASETS:
            tasks.append(
                TaskSpec(
                    name=f"{env}-{dataset}-v2",
                    family="locomotion",
                    obs_dim=obs_dim,
                    act_dim=act_dim,
                    max_episode_steps=1000,
                    ref_min_score=ref_min,
                    ref_max_score=ref_max,
                    d4rl_filename=f"{env}_{dataset.replace('-', '_')}-v2.hdf5",
                    # Minari's mujoco/* datasets use v5 envs and their own reference
                    # scores, so they are not the D4RL tasks these names denote.
                    minari_id=None,
                    env_name=env_id,
                )
            )
    return tasks


# --- AntMaze (D4RL's evaluation env, rebuilt from gymnasium-robotics assets) ---------------

# task suffix -> (maze, D4RL file stem, Minari dataset name)
_ANTMAZE = {
    "umaze": ("umaze", "u-maze_noisy_multistart_False_multigoal_False", "umaze"),
    "umaze-diverse": ("umaze", "u-maze_noisy_multistart_True_multigoal_True", "umaze-diverse"),
    "medium-play": ("medium", "big-maze_noisy_multistart_True_multigoal_False", "medium-play"),
    "medium-diverse": (
        "medium",
        "big-maze_noisy_multistart_True_multigoal_True",
        "medium-diverse",
    ),
    "large-play": ("large", "hardest-maze_noisy_multistart_True_multigoal_False", "large-play"),
    "large-diverse": (
        "large",
        "hardest-maze_noisy_multistart_True_multigoal_True",
        "large-diverse",
    ),
}
ANTMAZE_EPISODE_STEPS = {"umaze": 700, "medium": 1000, "large": 1000}


def _antmaze_tasks() -> list[TaskSpec]:
    tasks = []
    for suffix, (maze, stem, minari_name) in _ANTMAZE.items():
        # v0 files live in D4RL's ant_maze_new/, v2 files (fixed timeouts) in ant_maze_v2/.
        for version, filename in (
            ("v0", f"Ant_maze_{stem}_sparse.hdf5"),
            ("v2", f"Ant_maze_{stem}_sparse_fixed.hdf5"),
        ):
            tasks.append(
                TaskSpec(
                    name=f"antmaze-{suffix}-{version}",
                    family="antmaze",
                    obs_dim=29,
                    act_dim=8,
                    max_episode_steps=ANTMAZE_EPISODE_STEPS[maze],
                    ref_min_score=0.0,
                    ref_max_score=1.0,
                    reward_tune="cql_antmaze",
                    d4rl_filename=filename,
                    # Minari's port was regenerated in gymnasium-robotics' AntMaze (other
                    # physics), so it stands in for either D4RL version only approximately.
                    minari_id=f"D4RL/antmaze/{minari_name}-v1",
                    env_name=maze,
                    minari_obs_keys=("achieved_goal", "observation"),
                )
            )
    return tasks


# --- PointMaze (the embedded default: data generated here, see docs/pointmaze.md) --------

POINTMAZE_EPISODE_STEPS = {"umaze": 300, "medium": 600, "large": 800}
# Used only if reference_scores.json is missing (e.g. an install without package data);
# the values it held when written (300 episodes per policy).
_POINTMAZE_FALLBACK_SCORES = {
    "pointmaze-umaze": (15.38, 244.3),
    "pointmaze-medium": (10.587, 497.11),
    "pointmaze-large": (6.58, 643.79),
}


def load_reference_scores(path: Path = REFERENCE_SCORES_PATH) -> dict[str, tuple[float, float]]:
    """Measured (min, max) returns per PointMaze task; fallbacks where none were measured."""
    scores = dict(_POINTMAZE_FALLBACK_SCORES)
    if path.exists():
        table = json.loads(path.read_text())
        for name, entry in table.get("tasks", {}).items():
            scores[name] = (float(entry["ref_min_score"]), float(entry["ref_max_score"]))
    return scores


def _pointmaze_tasks() -> list[TaskSpec]:
    scores = load_reference_scores()
    tasks = []
    for maze, steps in POINTMAZE_EPISODE_STEPS.items():
        name = f"pointmaze-{maze}"
        ref_min, ref_max = scores[name]
        tasks.append(
            TaskSpec(
                name=name,
                family="pointmaze",
                obs_dim=6,
                act_dim=2,
                max_episode_steps=steps,
                ref_min_score=ref_min,
                ref_max_score=ref_max,
                d4rl_filename=None,
                # Our evaluation protocol (random start and goal cells, sparse reward)
                # differs from Minari's; reference scores are ours, not Minari's.
                minari_id=None,
                env_name=maze,
            )
        )
    return tasks


_REGISTRY: dict[str, TaskSpec] = {
    task.name: task for task in (*_locomotion_tasks(), *_antmaze_tasks(), *_pointmaze_tasks())
}


def get_task(name: str) -> TaskSpec:
    """The TaskSpec for ``name``; an unknown name raises UnknownTaskError naming close ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else "run list_tasks() to see the known tasks."
    )
    raise UnknownTaskError(f"Unknown task {name!r}: {hint}")


def list_tasks(family: str | None = None) -> list[str]:
    """Task names, sorted, optionally only those of one family."""
    if family is not None and family not in FAMILIES:
        raise UnknownTaskError(
            f"Unknown task family {family!r}: expected one of {', '.join(FAMILIES)}."
        )
    return sorted(n for n, t in _REGISTRY.items() if family is None or t.family == family)
