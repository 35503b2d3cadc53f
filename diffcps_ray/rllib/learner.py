"""DiffCPSTorchLearner: the DiffCPS update on learner-resident data, as an RLlib Learner.

As in RLlib's own algorithms (rllib/algorithms/iql), the Learner owns the optimisers and
the losses: ``configure_optimizers_for_module`` makes the critic, actor and lambda Adam
optimisers (``DiffCPSAgent.make_optimizers``) and registers them with
``register_optimizer``; ``compute_loss_for_module`` computes the DiffCPS losses of a batch
(``DiffCPSAgent.losses``). RLlib saves the optimisers' state with the Learner's, as for
any registered optimiser.

One ``update()`` call (one training iteration) runs ``gradient_steps_per_iteration`` full
DiffCPS gradient steps with those optimisers. Each step draws a minibatch by index from the
learner's resident shard (``TransitionBuffer``) and calls ``DiffCPSAgent.update``: critic
step; actor and lambda steps every ``freq`` steps; per-step Polyak and EMA. RLlib's
generic path (``forward_train`` -> ``compute_losses`` -> ``compute_gradients`` ->
``apply_gradients`` per minibatch) cannot express this step: it applies every optimiser
on every minibatch from losses computed before any of them stepped, whereas the actor's
loss must see the critic after this step's critic update, the actor and lambda step only
every ``freq`` steps, and the target networks move after each step
(``after_gradient_based_update`` runs once per ``update()`` call). So ``update`` is
overridden; the RLlib overhead (remote call, metrics reduce) is paid once per iteration.

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
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.utils.annotations import override

from diffcps_ray.algorithm.agent import OPTIMIZER_NAMES, DiffCPSAgent
from diffcps_ray.algorithm.buffer import TransitionBuffer
from diffcps_ray.algorithm.device import peak_memory_mb
from diffcps_ray.data import shards
from diffcps_ray.ray_shims import SkipDDPWrapping, wants_component
from diffcps_ray.rllib.offline_data import canonical_order
from diffcps_ray.rllib.rl_module import DiffCPSTorchRLModule
from diffcps_ray.runtime import set_torch_threads

AGENT_STATE_KEY = "diffcps_agent"

# Metric names under learners/<module_id>/.
NUM_GRADIENT_STEPS = "num_gradient_steps"
STEPS_PER_SECOND = "steps_per_s"
SAMPLE_TIME_FRACTION = "sample_time_fraction"
DATASET_ROWS = "dataset_rows"
# compute_loss_for_module's terms, logged under learners/<module_id>/.
LOSS_TERMS = ("critic_loss", "actor_loss", "lambda_loss")
GPU_PEAK_MEMORY_MB = "gpu_peak_memory_mb"  # only on CUDA learners


class DiffCPSTorchLearner(SkipDDPWrapping, TorchLearner):
    """A TorchLearner whose update is N DiffCPS gradient steps on resident data."""

    @override(TorchLearner)
    def build(self) -> None:
        if self.config.num_learners > 0:
            # A learner actor: one torch thread per CPU it was given (never oversubscribe).
            set_torch_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        super().build()
        self._buffer: TransitionBuffer | None = None
        self._grad_hooks: list[Any] = []
        if self.config.num_learners > 1:
            self._install_gradient_averaging()

    # --- optimisers: made and registered here, stepped by DiffCPSAgent.update ------------

    @override(TorchLearner)
    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        module = self._unwrapped(module_id)
        # First on the learner's device: the optimisers are made over the tensors there.
        module.to_device(self.device)
        for name, optimizer in module.agent.make_optimizers().items():
            params = [p for group in optimizer.param_groups for p in group["params"]]
            # No lr_or_lr_schedule: the agent sets its learning rates (optional cosine decay).
            self.register_optimizer(
                module_id=module_id, optimizer_name=name, optimizer=optimizer, params=params
            )

    def diffcps_optimizers(self, module_id: str = DEFAULT_MODULE_ID
                           ) -> dict[str, torch.optim.Optimizer]:
        """The module's registered optimisers by DiffCPS name (critic, actor, lambda)."""
        return {name: self.get_optimizer(module_id, name) for name in OPTIMIZER_NAMES}

    def _unwrapped(self, module_id: str = DEFAULT_MODULE_ID) -> DiffCPSTorchRLModule:
        return self.module[module_id].unwrapped()

    @property
    def agent(self) -> DiffCPSAgent:
        return self._unwrapped().agent

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

        for optimizer in self.diffcps_optimizers().values():
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
        self._buffer = TransitionBuffer(columns, device=self.device, reward_tune=spec_reward_tune)
        return len(order)

    @property
    def num_rows(self) -> int:
        return 0 if self._buffer is None else len(self._buffer)

    # --- the update: N gradient steps ----------------------------------------------------

    @override(Learner)
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

        Overridden, not RLlib's per-minibatch path: see the module docstring. The first
        call materialises ``training_data.data_iterators[0]`` (this learner's share);
        later calls ignore the data arguments. RLlib's weights sequence number stays 0,
        which tells env runners and ``set_state`` to always take these weights (they all
        change on every update).
        """
        if self._buffer is None:
            iterators = (training_data.data_iterators if training_data is not None
                         else data_iterators)
            if not iterators:
                raise ValueError("The first DiffCPS learner update needs a data iterator.")
            self.load_data(iterators[0])
        steps = int(num_gradient_steps or self.config.resolved_gradient_steps)
        self._run_steps(steps)
        return self.metrics.reduce()

    def _run_steps(self, steps: int) -> None:
        agent = self.agent
        optimizers = self.diffcps_optimizers()
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
            history.append(agent.update(minibatch, optimizers))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
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
        peak = peak_memory_mb(self.device)
        if peak is not None:
            self.metrics.log_value((mid, GPU_PEAK_MEMORY_MB), peak, window=1)

    @override(Learner)
    def compute_loss_for_module(self, *, module_id: str, config: Any = None,
                                batch: dict[str, Any], fwd_out: Any = None) -> torch.Tensor:
        """The DiffCPS losses of ``batch`` at the current parameters, summed.

        ``batch`` holds RLlib's columns (obs, actions, rewards, new_obs, terminateds) with
        rewards as DiffCPS trains on them (reward_tune applied). The sum's gradient is
        each optimiser's own (critic, actor and dual loss touch disjoint parameters); the
        terms are logged under ``learners/<module_id>/``. ``update`` does not use this
        (see the module docstring); it serves diagnostics and RLlib's loss API, and leaves
        the training trajectory unchanged (``DiffCPSAgent.losses``).
        """
        agent = self._unwrapped(module_id).agent
        columns = ("obs", "actions", "rewards", "new_obs", "terminateds")
        tensors = {c: torch.as_tensor(batch[c], dtype=torch.float32, device=agent.device)
                   for c in columns}  # fmt: skip
        losses = agent.losses(tensors)
        self.metrics.log_dict({name: losses[name].detach() for name in LOSS_TERMS},
                              key=module_id, window=1)  # fmt: skip
        return sum((losses[name] for name in LOSS_TERMS), torch.zeros((), device=agent.device))

    # --- state: RLlib's (module, registered optimisers) plus the agent's own state -------

    @override(Learner)
    def get_state(self, components: Any = None, *, not_components: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if wants_component(self, AGENT_STATE_KEY, components, not_components):
            # lambda, step counter, generators, last actor metrics (and the networks); the
            # optimisers' states are RLlib's "optimizer" component.
            state[AGENT_STATE_KEY] = self.agent.state_dict()
        return state

    @override(Learner)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if AGENT_STATE_KEY in state:
            # A checkpoint written before the Learner owned the optimisers holds their
            # states here (and an empty "optimizer" component): load them into ours.
            self.agent.load_state_dict(state[AGENT_STATE_KEY], self.diffcps_optimizers())


def _module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]
