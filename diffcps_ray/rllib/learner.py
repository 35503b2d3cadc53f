"""DiffCPSTorchLearner: runs ``DiffCPSAgent.update`` on learner-resident data.

One ``update()`` call (one training iteration) runs ``gradient_steps_per_iteration`` full
DiffCPS gradient steps. Each step draws a minibatch by index from the learner's resident
shard (``TransitionBuffer``) and calls the agent's own update, which holds the whole
method: critic step, actor and lambda steps every ``freq`` steps, per-step Polyak and EMA
(RLlib's ``after_gradient_based_update`` runs once per update call, so these cannot live
there). The RLlib overhead (remote call, metrics reduce) is paid once per iteration.

With several learners, every gradient is averaged across learners (a torch.distributed
all-reduce in a per-parameter post-accumulate hook, so before clipping), since RLlib's
DDP wrapper only acts through its own forward/compute_gradients path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.training_data import TrainingData

from diffcps_ray.algorithm.buffer import TransitionBuffer
from diffcps_ray.algorithm.device import peak_memory_mb
from diffcps_ray.data import shards
from diffcps_ray.rllib.offline_data import canonical_order
from diffcps_ray.rllib.rl_module import DiffCPSTorchRLModule
from diffcps_ray.runtime import set_torch_threads

AGENT_STATE_KEY = "diffcps_agent"

# Metric names under learners/<module_id>/.
NUM_GRADIENT_STEPS = "num_gradient_steps"
STEPS_PER_SECOND = "steps_per_s"
SAMPLE_TIME_FRACTION = "sample_time_fraction"
DATASET_ROWS = "dataset_rows"
GPU_PEAK_MEMORY_MB = "gpu_peak_memory_mb"  # only on CUDA learners


class DiffCPSTorchLearner(TorchLearner):
    """A TorchLearner whose update is N DiffCPS gradient steps on resident data."""

    def build(self) -> None:
        if self.config.num_learners > 0:
            # A learner actor: one torch thread per CPU it was given (never oversubscribe).
            set_torch_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        super().build()
        self._buffer: TransitionBuffer | None = None
        self._grad_hooks: list[Any] = []
        if self.config.num_learners > 1:
            self._install_gradient_averaging()

    # --- optimisers: the agent's own, registered with RLlib (state kept in the agent's) ---

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        module = self._unwrapped(module_id)
        module.to_device(self._device)
        for name, optimizer in _agent_optimizers(module.agent).items():
            params = [p for group in optimizer.param_groups for p in group["params"]]
            # No lr schedule: the agent owns its learning rates (and optional cosine decay).
            self.register_optimizer(
                module_id=module_id, optimizer_name=name, optimizer=optimizer, params=params
            )

    def _unwrapped(self, module_id: str = DEFAULT_MODULE_ID) -> DiffCPSTorchRLModule:
        module = self.module[module_id]
        return module.unwrapped() if hasattr(module, "unwrapped") else module

    @property
    def agent(self) -> Any:
        return self._unwrapped().agent

    def _make_modules_ddp_if_necessary(self) -> None:
        # Not wrapped in DDP: the agent calls its networks directly, so DDP's hooks would
        # never see a forward; gradients are averaged by _install_gradient_averaging.
        return None

    # --- multi-learner gradient averaging ------------------------------------------------

    def _install_gradient_averaging(self) -> None:
        """Average every gradient across learners as soon as backward has produced it.

        A post-accumulate hook per parameter all-reduces its gradient during backward,
        i.e. before the agent clips the gradient norm and steps its optimiser: each step
        uses the gradient of the mean loss over all learners' minibatches, as DDP would.
        Collectives match across learners because every learner's agent has the same seed
        (same coin flips and noise draws, same actor/lambda schedule); only the data
        shards differ.
        """
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "num_learners > 1 needs torch.distributed, which RLlib's learner group did "
                "not initialise."
            )
        world = dist.get_world_size()
        # Same initial weights everywhere (the seeds agree, but make it certain).
        for tensor in _module_tensors(self._unwrapped()):
            dist.broadcast(tensor.data, src=0)

        def average(param: torch.Tensor) -> None:
            dist.all_reduce(param.grad)
            param.grad.div_(world)

        for optimizer in _agent_optimizers(self.agent).values():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    self._grad_hooks.append(param.register_post_accumulate_grad_hook(average))

    # --- data ----------------------------------------------------------------------------

    def load_data(self, iterator: Any) -> int:
        """Materialise this learner's share (a Ray Data iterator) on its device, once."""
        columns = shards.materialize(iterator, device="cpu")
        order = torch.from_numpy(canonical_order(columns))
        columns = {name: values[order] for name, values in columns.items()}
        spec_reward_tune = getattr(self.agent.settings, "reward_tune", "none")
        self._buffer = TransitionBuffer(columns, device=self._device, reward_tune=spec_reward_tune)
        return len(order)

    @property
    def num_rows(self) -> int:
        return 0 if self._buffer is None else len(self._buffer)

    # --- the update: N gradient steps ----------------------------------------------------

    def update(
        self,
        batch: Any = None,
        batches: Any = None,
        batch_refs: Any = None,
        episodes: Any = None,
        episodes_refs: Any = None,
        data_iterators: Any = None,
        training_data: TrainingData | None = None,
        *,
        timesteps: Mapping[str, Any] | None = None,
        num_gradient_steps: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``num_gradient_steps`` DiffCPS steps; return the reduced metrics.

        The first call materialises ``training_data.data_iterators[0]`` (this learner's
        share); later calls ignore the data arguments.
        """
        self._check_is_built()
        if self._buffer is None:
            iterators = (training_data.data_iterators if training_data is not None
                         else data_iterators)
            if not iterators:
                raise ValueError("The first DiffCPS learner update needs a data iterator.")
            self.load_data(iterators[0])
        steps = int(num_gradient_steps or self.config.resolved_gradient_steps)
        self._weights_seq_no += 1
        self._run_steps(steps)
        return self.metrics.reduce()

    def _run_steps(self, steps: int) -> None:
        agent = self.agent
        buffer = self._buffer
        batch_size = int(agent.settings.batch_size)
        # The agent's training generator also draws the minibatch indices, so the sampler's
        # state is part of the agent's state (checkpoints resume the same minibatches).
        generator = agent.generator
        history: list[dict[str, torch.Tensor]] = []
        sample_time = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            minibatch = buffer.sample(batch_size, generator)
            sample_time += time.perf_counter() - t0
            history.append(agent.update(minibatch))
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        elapsed = time.perf_counter() - start
        self._log_step_metrics(history, steps, elapsed, sample_time)

    def _log_step_metrics(self, history: list[dict[str, torch.Tensor]], steps: int,
                          elapsed: float, sample_time: float) -> None:
        mid = DEFAULT_MODULE_ID
        # One device->host copy for all metrics of the iteration.
        names = list(history[-1])
        stacked = torch.stack([torch.stack([h[n].float() for n in names]) for h in history])
        means = stacked.mean(dim=0).cpu().numpy()
        last = stacked[-1].cpu().numpy()
        for name, mean, final in zip(names, means, last, strict=True):
            # lambda is a state, not a per-step loss: report where it ended up.
            value = final if name.startswith("lambda") else mean
            self.metrics.log_value((mid, name), float(value), window=1)
        self.metrics.log_value((mid, NUM_GRADIENT_STEPS), int(self.agent.num_steps), window=1)
        self.metrics.log_value((mid, DATASET_ROWS), self.num_rows, window=1)
        self.metrics.log_value((mid, STEPS_PER_SECOND), steps / max(elapsed, 1e-9), window=1)
        self.metrics.log_value(
            (mid, SAMPLE_TIME_FRACTION), sample_time / max(elapsed, 1e-9), window=1
        )
        peak = peak_memory_mb(self._device)
        if peak is not None:
            self.metrics.log_value((mid, GPU_PEAK_MEMORY_MB), peak, window=1)

    def compute_loss_for_module(self, *, module_id: str, config: Any = None,
                                batch: Any = None, fwd_out: Any = None) -> torch.Tensor:
        # RLlib's generic path (forward_train -> compute_losses -> one backward) does not
        # fit DiffCPS's three optimisers with different losses and schedules;
        # DiffCPSAgent.update computes them (see update()).
        raise NotImplementedError("DiffCPS learners compute losses in DiffCPSAgent.update.")

    # --- state: the agent's full state (optimisers, lambda, step counter, generators) ---

    def get_state(self, components: Any = None, *, not_components: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(AGENT_STATE_KEY, components, not_components):
            state[AGENT_STATE_KEY] = self.agent.state_dict()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if AGENT_STATE_KEY in state:
            self.agent.load_state_dict(state[AGENT_STATE_KEY])

    def _get_optimizer_state(self) -> dict[str, Any]:
        # The optimisers' state travels inside the agent's state (AGENT_STATE_KEY), exactly
        # as the agent saves it; RLlib's numpy round trip would only duplicate it.
        return {}

    def _set_optimizer_state(self, state: dict[str, Any]) -> None:
        return None


def _agent_optimizers(agent: Any) -> dict[str, torch.optim.Optimizer]:
    """The agent's optimisers by attribute name (critic, actor, lambda)."""
    found = {}
    for name, value in vars(agent).items():
        if isinstance(value, torch.optim.Optimizer):
            found[name.removesuffix("_optimizer").removesuffix("_optim")] = value
    return found


def _module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]

