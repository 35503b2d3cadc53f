"""diffcps-ray: DiffCPS as an RLlib offline algorithm, tuned with Ray Tune + Optuna.

The flow is data -> algorithm -> rllib -> tune -> analysis:

- ``diffcps_ray.data``: D4RL / Minari / generated data to validated Parquet shards.
- ``diffcps_ray.envs``: task registry, simulators, batched evaluation.
- ``diffcps_ray.algorithm``: the DiffCPS mathematics in pure torch (no Ray).
- ``diffcps_ray.rllib``: the RLlib Algorithm, Learner and RLModule around it.
- ``diffcps_ray.tune``: the sweep command; ``analysis``: tables, figures, report.
- ``diffcps_ray.policy`` / ``diffcps_ray.evaluate``: trained policies without Ray
  (``from diffcps_ray import load_policy``) and the command that evaluates them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_policy"]


def __getattr__(name: str) -> Any:
    # Lazy: importing diffcps_ray stays cheap (no torch) until a policy is loaded.
    if name == "load_policy":
        from diffcps_ray.policy import load_policy

        return load_policy
    raise AttributeError(f"module 'diffcps_ray' has no attribute {name!r}")
