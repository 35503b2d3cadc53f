"""Entry point: ``python -m diffcps_ray.tune``."""

from __future__ import annotations

import sys

from diffcps_ray.cli import run_main
from diffcps_ray.tune.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
