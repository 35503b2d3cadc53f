"""DiffCPS on RLlib's new API stack: config, Algorithm, Learner, RLModule, data ingestion.

- ``config.DiffCPSConfig``: every DiffCPSSettings field as a ``.training()`` keyword, the
  task (``.environment(task=...)``), its shards (``.offline_data(data_root=...)``) and the
  simulator evaluation (``.evaluation(eval_interval=..., eval_episodes=...)``).
- ``algorithm.DiffCPS``: N gradient steps per ``train()``, evaluation every few iterations.
- ``learner.DiffCPSTorchLearner``: runs ``DiffCPSAgent.update`` on learner-resident data.
- ``rl_module.DiffCPSTorchRLModule``: the agent's networks; inference = ``agent.act``.
- ``offline_data.DiffCPSOfflineData``: Ray Data reads and splits the shards per learner.
"""

from diffcps_ray.rllib.algorithm import DiffCPS
from diffcps_ray.rllib.config import DiffCPSConfig

__all__ = ["DiffCPS", "DiffCPSConfig"]
