"""A Tune searcher that hands out a fixed list of complete trial configs, in order.

The confirmation and ablation phases know every trial up front (task x config x seed).
BasicVariantGenerator's points_to_evaluate would do, but Tune ignores
``max_concurrent_trials`` for it, and the concurrency limit is what keeps CPUs free for
Ray Data. A Searcher gets Tune's ConcurrencyLimiter, and saves its position so that a
restored phase does not start its trials twice.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from ray.tune.search import Searcher


class FixedPoints(Searcher):
    """Suggests ``points`` one by one, then FINISHED."""

    def __init__(self, points: list[dict[str, Any]]) -> None:
        super().__init__()
        self.points = [copy.deepcopy(p) for p in points]
        self.next_index = 0

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        # The points are complete configs; only the metric and mode are taken.
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.next_index >= len(self.points):
            return Searcher.FINISHED
        point = copy.deepcopy(self.points[self.next_index])
        self.next_index += 1
        return point

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        pass

    def get_state(self) -> dict[str, Any]:
        return {"points": self.points, "next_index": self.next_index,
                "metric": self._metric, "mode": self._mode}

    def set_state(self, state: dict[str, Any]) -> None:
        self.points = state["points"]
        self.next_index = state["next_index"]
        self._metric, self._mode = state["metric"], state["mode"]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
