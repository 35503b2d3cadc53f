"""The agent's CUDA side: host-to-device copies, backend flags, a training step that never
waits for the GPU. The CUDA tests run under `make gpu-check` (bench/gpu_check.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffcps_ray.algorithm.agent import DiffCPSAgent
from diffcps_ray.algorithm.buffer import TransitionBuffer
from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.algorithm.device import (
    configure_cuda_backends,
    host_to_device,
    peak_memory_mb,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
OBS, ACT = 11, 3


def _buffer(device: str, n: int = 2_000) -> TransitionBuffer:
    rng = np.random.default_rng(0)
    return TransitionBuffer({
        "obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "new_obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "terminateds": rng.random(n) < 0.05,
    }, device=device)  # fmt: skip


def _tf32_flags() -> tuple[bool, bool, bool]:
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark)


def test_host_to_device_on_cpu_is_the_plain_conversion() -> None:
    obs = np.arange(6, dtype=np.float64).reshape(2, 3)
    tensor = host_to_device(obs, torch.device("cpu"))
    assert tensor.dtype == torch.float32 and tensor.device.type == "cpu"
    assert torch.equal(tensor, torch.as_tensor(obs, dtype=torch.float32))
    assert peak_memory_mb(torch.device("cpu")) is None


def test_a_cpu_agent_leaves_the_cuda_backend_flags_alone() -> None:
    before = _tf32_flags()
    agent = DiffCPSAgent(OBS, ACT, DiffCPSSettings(hidden_dim=32))
    assert agent.act(np.zeros(OBS, dtype=np.float32)).shape == (ACT,)
    assert _tf32_flags() == before


@needs_cuda
def test_a_cuda_agent_states_full_float32_matmuls() -> None:
    DiffCPSAgent(OBS, ACT, DiffCPSSettings(hidden_dim=32), device="cuda")
    configure_cuda_backends()  # idempotent
    assert _tf32_flags() == (False, False, False)


@needs_cuda
def test_host_to_device_copies_through_pinned_memory() -> None:
    obs = np.random.default_rng(0).normal(size=(10, OBS))
    tensor = host_to_device(obs, torch.device("cuda"))
    assert tensor.device.type == "cuda" and tensor.dtype == torch.float32
    assert torch.equal(tensor.cpu(), torch.as_tensor(obs, dtype=torch.float32))
    # a tensor already on the device is not copied through the host
    assert host_to_device(tensor, torch.device("cuda")) is tensor


@needs_cuda
def test_training_steps_never_wait_for_the_gpu() -> None:
    # Max-Q backup, an actor step every other step and the cosine decay: every branch.
    settings = DiffCPSSettings(max_q_backup=True, freq=2, lr_decay=True, lr_decay_steps=10,
                               lr_decay_interval=1, batch_size=64)
    agent = DiffCPSAgent(OBS, ACT, settings, device="cuda")
    buffer = _buffer("cuda")
    for _ in range(3):  # warm-up: cuBLAS handles and the caching allocator's first blocks
        agent.update(buffer.sample(64, agent.generator))
    torch.cuda.set_sync_debug_mode("error")  # any host-device synchronisation raises
    try:
        history = [agent.update(buffer.sample(64, agent.generator)) for _ in range(4)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(v) for metrics in history for v in metrics.values())
    peak = peak_memory_mb(agent.device)
    assert peak is not None and peak > 0
