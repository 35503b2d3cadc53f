"""diffcps-ray: DiffCPS as an RLlib offline algorithm, tuned with Ray Tune + Optuna.

The flow is data -> algorithm -> rllib -> tune -> analysis:

- ``diffcps_ray.data``: D4RL / Minari / generated data to validated Parquet shards.
- ``diffcps_ray.envs``: task registry, simulators, batched evaluation.
- ``diffcps_ray.algorithm``: the DiffCPS mathematics in pure torch (no Ray).
- ``diffcps_ray.rllib``: the RLlib Algorithm, Learner and RLModule around it.
- ``diffcps_ray.tune``: the sweep command; ``analysis``: tables, figures, report.
"""

__version__ = "0.1.0"
