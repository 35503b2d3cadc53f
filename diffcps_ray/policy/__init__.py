"""Trained DiffCPS policies without Ray: load, act, export (format in docs/policies.md).

- ``load_policy(PATH, task=None, device="cpu", seed=0) -> Policy``: PATH is an exported
  policy, a train run, a sweep experiment (the best confirmed policy of ``task``), a Tune
  trial directory or an RLlib checkpoint. Never starts Ray, never reads the dataset.
- ``Policy``: ``act(obs)`` with the Algorithm's evaluation rule; ``obs_dim``, ``act_dim``,
  ``task``, ``settings``, ``score``, ``provenance``; ``save(dir)`` exports it.
- ``export_sweep_policies(experiment_dir, record, log)``: every confirmation trial's best
  and final checkpoint to ``<experiment>/policies/<task>/seed_<k>/{best,final}/``.
"""

from diffcps_ray.policy.core import POLICY_FORMAT_VERSION, Policy, PolicyError
from diffcps_ray.policy.export import export_sweep_policies, export_train_policy
from diffcps_ray.policy.sources import find_policies, load_policy

__all__ = [
    "POLICY_FORMAT_VERSION",
    "Policy",
    "PolicyError",
    "export_sweep_policies",
    "export_train_policy",
    "find_policies",
    "load_policy",
]
