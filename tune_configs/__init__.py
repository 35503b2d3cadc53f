"""The sweep suites: one YAML file per suite, ablations/ one per ablation.

A package only so that an install (``pip install .``, as on cluster nodes) ships the files
beside the code; ``diffcps_ray.tune.suites`` finds them with importlib.resources.
"""
