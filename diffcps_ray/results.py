"""Reading metrics out of Tune/RLlib result dicts and stating scores (no Ray import: the
analysis uses it too)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def metric_value(result: dict[str, Any], key: str) -> Any:
    """A metric by its "/"-joined name, flat (progress.csv) or nested (result.json,
    ``Result.metrics``); None when absent."""
    if key in result:
        return result[key]
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def finite_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def score_summary(
    scores: Sequence[float],
    eval_noise: Sequence[float] = (),
    episodes: int | None = None,
    behaviour: float | None = None,
) -> str:
    """Seeds' final scores as one phrase, with their noise and, given one, the behaviour's.

    ``scores``: one normalised score per seed; ``eval_noise``: each seed's evaluation
    standard error (episode spread / sqrt(episodes)). A difference from the behaviour is
    measured in the larger of the standard error over seeds and the evaluation noise over
    sqrt(seeds): two seeds that land close together say little about the spread.
    """
    mean = statistics.fmean(scores)
    sem = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else math.nan
    noise = statistics.fmean(eval_noise) if eval_noise else math.nan
    if math.isfinite(sem):
        text = f"{mean:.1f} +- {sem:.1f} (mean +- standard error over {len(scores)} seeds"
    else:
        text = f"{mean:.1f} (1 seed"
    if episodes:
        text += f", {episodes} evaluation episodes each"
    if math.isfinite(noise):
        text += f"; evaluation noise +-{noise:.1f} per seed"
    text += ")"
    if behaviour is None:
        return text
    diff = mean - behaviour
    text += (
        f", {abs(diff):.1f} points {'above' if diff > 0 else 'below'} the data's behaviour "
        f"policy ({behaviour:.1f})"
    )
    # Each seed's score carries its own evaluation noise, so the mean's standard error is
    # at least noise / sqrt(seeds), however close a few seeds happen to land.
    spreads = [v for v in (sem, noise / math.sqrt(len(scores))) if math.isfinite(v)]
    spread = max(spreads, default=math.nan)
    if math.isfinite(spread) and spread > 0:
        text += f": {abs(diff) / spread:.1f} standard errors"
    return text
