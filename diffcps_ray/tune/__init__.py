"""``python -m diffcps_ray.tune``: Ray Tune + Optuna sweeps over kappa and lambda_clip.

- ``suites``: tune_configs/*.yaml (tasks, search ranges, budgets) read and validated.
- ``data_prep``: generate or convert missing data before Ray starts.
- ``trainable``: the Tune trainable around the DiffCPS Algorithm (NaN checks, checkpoints).
- ``bridge``: trial config -> DiffCPSConfig -> DiffCPS Algorithm.
- ``sweep``: search phase (per task, an Optuna TPE study proposes and ASHA stops; one
  searcher, ``plan.SweepSearcher``, serves every task), confirmation phase (best config
  x seeds), ablation grids, resume; ``manifest``: STORAGE/NAME/experiment.json.
- ``cli``: the command line.

Importing this package stays cheap: Ray is imported where it is used.
"""
