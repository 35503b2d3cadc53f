"""DiffCPS in pure torch (no Ray, no gymnasium): settings, agent, buffer, the update rules.

- ``config``: ``DiffCPSSettings`` and the per-task table ``TASK_SETTINGS``.
- ``diffusion``: vp schedule, noise model eps(a_i, s, i), reverse sampler, L_c.
- ``critics``: twin Q critics (stacked storage, one batched multiply).
- ``update``: the update rules, one function per equation.
- ``agent``: ``DiffCPSAgent`` (training step, evaluation action, checkpoints).
- ``buffer``: ``TransitionBuffer``; ``rewards``: ``tune_rewards``; ``mish``: fast Mish.
"""

from diffcps_ray.algorithm.agent import DiffCPSAgent
from diffcps_ray.algorithm.buffer import TransitionBuffer
from diffcps_ray.algorithm.config import TASK_SETTINGS, DiffCPSSettings
from diffcps_ray.algorithm.rewards import tune_rewards

__all__ = ["TASK_SETTINGS", "DiffCPSAgent", "DiffCPSSettings", "TransitionBuffer", "tune_rewards"]
