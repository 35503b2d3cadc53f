"""The CUDA side of the agent: backend settings, host-to-device copies, peak memory.

Nothing here changes what a CPU run computes: every function is a no-op (or the plain
copy) unless a tensor is headed for, or lives on, a CUDA device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

_configured = False


def configure_cuda_backends() -> None:
    """Full float32 matmuls on CUDA (no TF32) and no cuDNN autotuning; once per process.

    Why no TF32: it rounds matmul inputs to a 10-bit mantissa, so a GPU run would train a
    different agent from the CPU run of the same seed (the diffusion loss L_c is compared
    against kappa at the 1e-2 scale), and at batch 256 with 256-wide layers the step is
    bound by kernel launches, not by matmul throughput, so TF32 would buy little.
    cuDNN is not used by these MLPs (linear layers run on cuBLAS); its flags are set so
    that nothing depends on torch's defaults (cudnn.allow_tf32 defaults to True).
    """
    global _configured
    if _configured:
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    _configured = True


def host_to_device(values: Any, device: torch.device, dtype: torch.dtype = torch.float32
                   ) -> Tensor:
    """``values`` (array or tensor) as a ``dtype`` tensor on ``device``.

    Host data bound for a CUDA device goes through pinned memory with a non-blocking copy:
    the copy is a DMA transfer queued on the stream, so the host goes on launching the
    kernels that use it instead of waiting for a staged pageable copy. Elsewhere it is
    ``torch.as_tensor``.
    """
    if device.type != "cuda":
        return torch.as_tensor(values, dtype=dtype, device=device)
    if torch.is_tensor(values) and values.device.type != "cpu":
        return values.to(device=device, dtype=dtype)
    host = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values,
                           dtype=dtype)
    return host.pin_memory().to(device, non_blocking=True)


def peak_memory_mb(device: torch.device) -> float | None:
    """This process's peak CUDA memory held by tensors on ``device`` so far, in MiB.

    None off CUDA. Reads the allocator's counter (no synchronisation).
    """
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
