"""Trial config -> DiffCPS Algorithm (placeholder until diffcps_ray.rllib lands)."""

from __future__ import annotations

from typing import Any


def build_diffcps(config: dict[str, Any]) -> Any:
    raise NotImplementedError("diffcps_ray.rllib is not available yet.")
