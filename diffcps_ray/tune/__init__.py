"""``python -m diffcps_ray.tune``: Ray Tune + Optuna sweeps over kappa and lambda_clip.

Inputs:
- ``suites``: tune_configs/*.yaml (tasks, search ranges, budgets) read and validated.
- ``data_prep``: generate or convert missing data before Ray starts.
- ``trial_config``: one trial's typed config, carried by Tune as a flat dict.
Trials:
- ``bridge``: trial config -> DiffCPSConfig -> DiffCPS Algorithm.
- ``trainable``: the Tune trainable around the DiffCPS Algorithm (NaN checks, checkpoints).
The sweep:
- ``plan``: what runs next (per-task search proposals, confirmations, ASHA rungs); no Ray.
- ``studies``: one persisted Optuna study per task, seeded per proposal.
- ``selection``: which search trial a task confirms (the paper's config within the noise).
- ``adapters``: the plan behind Tune's Searcher, Scheduler and Stopper; they find the
  running sweep through ``adapters.driving()`` / ``current_driver()``.
- ``sweep``: one experiment (search, confirmation or ablation grid, resume, export).
Records and output:
- ``record``: experiment.json (format 3) as a typed ``ExperimentRecord``; no Ray.
- ``store``: the experiment directory STORAGE/NAME, local or a URI.
- ``ray_start``: starting or joining Ray, trial concurrency, the driver's Tune settings.
- ``console``: the status table, per-trial lines and the closing summary.
- ``tracking``: Tune's CSV/JSON loggers and the ``--logger`` trackers.
- ``cli``: the command line (exit status 0 done, 2 bad input, 3 a task produced no
  result, 130 interrupted).

docs/architecture.md tabulates the modules. Importing this package stays cheap: Ray is
imported where it is used.
"""
