"""DiffCPS as an RLlib Algorithm (new API stack, offline).

One ``train()`` call:
1. ``training_step``: every learner runs ``gradient_steps_per_iteration`` DiffCPS steps on
   its resident share of the data (the first call materialises the shares, which Ray Data
   read and split; see ``offline_data.py``);
2. every ``eval_interval`` iterations, an evaluation in the task's simulator: batched
   episodes over several envs with batched inference through the RLModule
   (``diffcps_ray.envs.evaluate.evaluate_policy``), in this process, with the current
   weights. Data that recorded their own evaluation env (a converted Minari dataset's
   manifest ``eval_env``) are evaluated there instead of in the task's simulator.

Every result goes through RLlib's MetricsLogger (``self.metrics``), so ``train()`` returns
RLlib's usual structure and passes ``check_train_results_new_api_stack``. Result keys
(docs/interfaces.md): ``evaluation/normalized_score``, ``evaluation/episode_return_mean``,
``evaluation/best_normalized_score``, ``evaluation/success_rate`` (goal tasks), logged
every iteration with the last evaluation carried forward (NaN before the first one);
``num_gradient_steps`` (cumulative); ``learners/default_policy/...``; ``env_runners/``
counts the data rows drawn for gradient steps (there are no env runners: as in RLlib's
offline algorithms, "sampled env steps" are rows read from the data), and
``fault_tolerance/`` reports zero env runners.

Checkpoints (``save_to_path``) hold RLlib's files plus ``policy/``: the acting policy in
the project's own format (``policy.json`` + ``weights.pt``, docs/policies.md), so
``diffcps_ray.load_policy`` reads a checkpoint without Ray and without unpickling.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import (
    COMPONENT_LEARNER,
    COMPONENT_LEARNER_GROUP,
    COMPONENT_RL_MODULE,
    DEFAULT_MODULE_ID,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EVALUATION_ITERATION_TIMER,
    EVALUATION_RESULTS,
    FAULT_TOLERANCE_STATS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    TIMERS,
)

from diffcps_ray.algorithm.device import host_to_device
from diffcps_ray.errors import ConfigError
from diffcps_ray.policy.checkpoints import CHECKPOINT_POLICY_DIR
from diffcps_ray.policy.core import Policy
from diffcps_ray.ray_shims import restore_without_env_runners
from diffcps_ray.rllib.config import DiffCPSConfig
from diffcps_ray.rllib.rl_module import DiffCPSTorchRLModule

if TYPE_CHECKING:
    from diffcps_ray.envs.tasks import TaskSpec

NUM_GRADIENT_STEPS = "num_gradient_steps"
NORMALIZED_SCORE = "normalized_score"
BEST_NORMALIZED_SCORE = "best_normalized_score"
EPISODE_RETURN_MEAN = "episode_return_mean"
SUCCESS_RATE = "success_rate"
NUM_EVALUATIONS = "num_evaluations"
_STATE_KEY = "diffcps"

logger = logging.getLogger(__name__)


class DiffCPS(Algorithm):
    """DiffCPS (diffusion-policy constrained policy search), offline, on RLlib."""

    config: DiffCPSConfig

    @classmethod
    @override(Algorithm)
    def get_default_config(cls) -> DiffCPSConfig:
        return DiffCPSConfig()

    @override(Algorithm)
    def setup(self, config: Any) -> None:
        super().setup(config)
        self._num_gradient_steps = 0
        self._last_eval: dict[str, float] = {}
        self._evaluated_at_step: int | None = None  # gradient steps the last score saw
        self._recorded_eval_env: dict[str, Any] | None = None
        self._best_score = -math.inf
        self._num_evaluations = 0
        self._eval_module: DiffCPSTorchRLModule | None = None
        if self.offline_data is None:  # only if validation was switched off
            raise ConfigError(
                "DiffCPS has no data: use config.offline_data(data_root=DIR) or input_=DIR/<task>."
            )
        # One Ray Data iterator per learner (the first update materialises them).
        self._data_iterators = self.offline_data.learner_iterators(len(self.learner_group))
        # Data rows one gradient step draws: batch_size on each learner.
        self._rows_per_step = int(self.config.get_diffcps_settings().batch_size) * max(
            1, len(self.learner_group)
        )
        self._eval_spec = self._evaluation_task()

    def _evaluation_task(self) -> TaskSpec:
        """The task's spec, evaluated in the data's own env where its manifest names one."""
        from diffcps_ray.data.shards import read_manifest

        spec = self.config.task_spec
        manifest = read_manifest(self.config.resolved_input())
        self._recorded_eval_env = manifest.eval_env
        if manifest.eval_env is None:
            return spec
        eval_spec = spec.with_eval_env(manifest.eval_env)
        scoring = "; the score is the success rate x 100" if eval_spec.scores_success else ""
        # A warning so it shows without logging set up: these scores are not D4RL's.
        logger.warning(
            "DiffCPS evaluates %s in %s, not in the task's own simulator%s.",
            spec.name, eval_spec.eval_env_label, scoring,
        )
        return eval_spec

    @property
    def evaluation_task(self) -> TaskSpec:
        """The TaskSpec evaluations run in (the task's, or the data's recorded env)."""
        return self._eval_spec

    @property
    def num_gradient_steps(self) -> int:
        """Gradient steps taken so far (each learner takes them in lockstep)."""
        return self._num_gradient_steps

    # --- training ------------------------------------------------------------------------

    @override(Algorithm)
    def training_step(self) -> None:
        """The learners' gradient steps, then (every ``eval_interval`` iterations) an
        evaluation; everything is logged through ``self.metrics``."""
        steps = self.config.resolved_gradient_steps
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                training_data=TrainingData(data_iterators=self._data_iterators),
                timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self._num_gradient_steps},
                num_gradient_steps=steps,
            )
        self._num_gradient_steps += steps
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        self.metrics.log_value(NUM_GRADIENT_STEPS, self._num_gradient_steps, reduce="item")
        rows = steps * self._rows_per_step
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED), rows, reduce="sum")
        self.metrics.log_value(
            (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), rows, reduce="lifetime_sum"
        )
        # RLlib reports these for its env runners; DiffCPS has none.
        self.metrics.log_dict(
            {"num_healthy_workers": 0, "num_remote_worker_restarts": 0},
            key=FAULT_TOLERANCE_STATS, reduce="item",
        )  # fmt: skip

        # self.iteration is incremented after train() returns.
        interval = self.config.resolved_eval_interval
        if interval and (self.iteration + 1) % interval == 0:
            with self.metrics.log_time((TIMERS, EVALUATION_ITERATION_TIMER)):
                self.evaluate_in_simulator()
        # Every iteration, so the keys Tune's scheduler reads are always there.
        self.metrics.log_dict(self.evaluation_metrics(), key=EVALUATION_RESULTS, reduce="item")

    # --- evaluation ----------------------------------------------------------------------

    def evaluate_in_simulator(self, num_episodes: int | None = None,
                              seed: int | None = None) -> dict[str, float]:
        """Evaluate the current weights in the task's simulator; update the best score."""
        from diffcps_ray.envs.evaluate import evaluate_policy

        config = self.config
        module = self._inference_module()
        device = module.device
        episodes = int(num_episodes or config.resolved_eval_episodes)
        seed = int(config.eval_seed + self.iteration) if seed is None else int(seed)

        def act(obs: np.ndarray) -> np.ndarray:
            batch = {Columns.OBS: host_to_device(obs, device)}
            return module.forward_inference(batch)[Columns.ACTIONS].cpu().numpy()

        start = time.perf_counter()
        # The evaluation draws its candidates from its own RNG stream: training continues
        # exactly as it would have without the evaluation.
        with _preserved_rng(module.agent, seed):
            result = evaluate_policy(self._eval_spec, act, episodes, seed,
                                     num_envs=config.eval_num_envs)
        result["time_s"] = time.perf_counter() - start
        self._num_evaluations += 1
        self._evaluated_at_step = self._num_gradient_steps
        self._best_score = max(self._best_score, float(result[NORMALIZED_SCORE]))
        self._last_eval = {key: float(value) for key, value in result.items()}
        return dict(self._last_eval)

    @override(Algorithm)
    def evaluate(self, parallel_train_future: Any = None) -> dict[str, Any]:
        """Algorithm.evaluate: the simulator evaluation (there are no eval env runners)."""
        self.evaluate_in_simulator()
        return {EVALUATION_RESULTS: self.evaluation_metrics()}

    def evaluation_metrics(self) -> dict[str, float]:
        """The last evaluation (NaN before the first) plus the best score so far."""
        metrics = {NORMALIZED_SCORE: math.nan, EPISODE_RETURN_MEAN: math.nan}
        if self.config.task_spec.is_goal_task:
            metrics[SUCCESS_RATE] = math.nan
        metrics.update(self._last_eval)
        metrics[BEST_NORMALIZED_SCORE] = (
            self._best_score if self._num_evaluations else math.nan
        )
        metrics[NUM_EVALUATIONS] = self._num_evaluations
        return metrics

    @override(Algorithm)
    def get_module(self, module_id: str = DEFAULT_MODULE_ID) -> DiffCPSTorchRLModule | None:
        """The RLModule that acts (None for an unknown module id).

        RLlib's own ``get_module`` asks the env runners, which an offline DiffCPS run does
        not have; here it is the learner's module (or a driver copy synced from the
        learners), the one the simulator evaluation acts with.
        """
        if self.env_runner is not None or self.env_runner_group is not None:
            return super().get_module(module_id)
        if module_id != DEFAULT_MODULE_ID:
            return None
        return self._inference_module()

    def _inference_module(self) -> DiffCPSTorchRLModule:
        """The module to act with: the local learner's own, or a synced driver copy."""
        if self.learner_group.is_local:
            # A local learner runs in this process: foreach_learner hands back its module.
            (result,) = self.learner_group.foreach_learner(
                lambda learner: learner.module[DEFAULT_MODULE_ID].unwrapped()
            )
            return result.get()
        if self._eval_module is None:
            spec = RLModuleSpec(
                module_class=DiffCPSTorchRLModule,
                observation_space=self.config.observation_space,
                action_space=self.config.action_space,
                model_config=self.config.model_config,
                inference_only=True,
            )
            self._eval_module = spec.build()
        weights = self.learner_group.get_weights(module_ids=[DEFAULT_MODULE_ID])
        self._eval_module.set_state(weights[DEFAULT_MODULE_ID])
        return self._eval_module

    # --- checkpoints ---------------------------------------------------------------------

    def acting_policy(self, state: dict[str, Any] | None = None) -> Policy:
        """The current weights as a ``Policy`` (what ``save_to_path`` writes to ``policy/``).

        ``state``: an ``Algorithm.get_state()`` to take the weights from instead of the
        live module. The score is the last evaluation's if it scored these weights.
        """
        config = self.config
        if state is not None:
            weights = state[COMPONENT_LEARNER_GROUP][COMPONENT_LEARNER][COMPONENT_RL_MODULE][
                DEFAULT_MODULE_ID
            ]
        else:
            weights = self._inference_module().state_dict()
        fresh = self._evaluated_at_step == self._num_gradient_steps
        return Policy(
            task=config.task_spec.name,
            obs_dim=config.task_spec.obs_dim,
            act_dim=config.task_spec.act_dim,
            settings=config.get_diffcps_settings(),
            weights=weights,
            eval_env=self._recorded_eval_env,
            score=self._last_eval.get(NORMALIZED_SCORE) if fresh else None,
            provenance={"kind": "checkpoint", "iteration": self.iteration,
                        NUM_GRADIENT_STEPS: self._num_gradient_steps},
        )  # fmt: skip

    @override(Algorithm)
    def save_to_path(self, path: Any = None, *, state: dict[str, Any] | None = None,
                     filesystem: Any = None, use_msgpack: bool = False) -> str:
        """RLlib's checkpoint, plus the acting policy in ``policy/`` (policy.json and
        weights.pt): what ``diffcps_ray.load_policy`` reads, without Ray."""
        import pyarrow.fs

        saved = super().save_to_path(path, state=state, filesystem=filesystem,
                                     use_msgpack=use_msgpack)  # fmt: skip
        policy = self.acting_policy(state)
        if filesystem is None:
            filesystem, _ = pyarrow.fs.FileSystem.from_uri(str(saved if path is None else path))
        if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
            policy.save(Path(saved) / CHECKPOINT_POLICY_DIR)
        else:  # written here, then copied to the checkpoint's filesystem
            with tempfile.TemporaryDirectory() as tmp:
                local = policy.save(Path(tmp) / CHECKPOINT_POLICY_DIR)
                pyarrow.fs.copy_files(str(local), f"{saved}/{CHECKPOINT_POLICY_DIR}",
                                      destination_filesystem=filesystem)  # fmt: skip
        return saved

    @override(Algorithm)
    def get_state(self, components: Any = None, *, not_components: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        state[_STATE_KEY] = {
            NUM_GRADIENT_STEPS: self._num_gradient_steps,
            "last_eval": dict(self._last_eval),
            "best_score": self._best_score,
            NUM_EVALUATIONS: self._num_evaluations,
            "evaluated_at_step": self._evaluated_at_step,
        }
        return state

    @override(Algorithm)
    def restore_from_path(self, path: Any, *args: Any, **kwargs: Any) -> None:
        if self.env_runner_group is None:
            # Algorithm.restore_from_path syncs weights to env runners, which an offline
            # DiffCPS run does not have; restore the components (learner group with the
            # agent's state, metrics, our counters) without that step.
            return restore_without_env_runners(self, path, *args, **kwargs)
        return super().restore_from_path(path, *args, **kwargs)

    @override(Algorithm)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        own = state.get(_STATE_KEY)
        if own:
            self._num_gradient_steps = int(own[NUM_GRADIENT_STEPS])
            self._last_eval = dict(own["last_eval"])
            self._best_score = float(own["best_score"])
            self._num_evaluations = int(own[NUM_EVALUATIONS])
            self._evaluated_at_step = own.get("evaluated_at_step")


@contextlib.contextmanager
def _preserved_rng(agent: Any, seed: int) -> Iterator[None]:
    """Sample from streams seeded with ``seed``; put the agent's generators back after."""
    generators = [g for g in vars(agent).values() if isinstance(g, torch.Generator)]
    saved = [g.get_state() for g in generators]
    global_state = torch.get_rng_state()
    for offset, generator in enumerate(generators):
        generator.manual_seed(seed + offset)
    try:
        yield
    finally:
        for generator, state in zip(generators, saved, strict=True):
            generator.set_state(state)
        torch.set_rng_state(global_state)
