"""How a task's Parquet shards reach the learners: Ray Data reads and splits, once.

RLlib's default OfflineData maps every batch through OfflinePreLearner (an episode per
row, about 5 ms per 256-row batch on a small CPU, docs/performance.md), which would cost more than
the gradient step itself. DiffCPS samples uniformly with replacement from a fixed data
set, so each learner only needs its share of the rows resident in memory once:

- Ray Data reads the verified shards (``diffcps_ray.data.shards.read_dataset``);
- with several learners, ``streaming_split(n, equal=True)`` gives each learner a
  disjoint share; with one (local or remote) learner, one iterator over all rows;
- each learner materialises its iterator into tensors on its device on its first update
  and samples minibatches by index from then on (``TransitionBuffer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.utils.annotations import override

from diffcps_ray.data import shards

if TYPE_CHECKING:
    import ray.data
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig


class DiffCPSOfflineData(OfflineData):
    """Ray Data ingestion for DiffCPS: a dataset and its per-learner splits.

    Replaces RLlib's OfflineData (set as ``offline_data_class``); it does not map batches
    through OfflinePreLearner and ``sample`` is not used.
    """

    @override(OfflineData)
    def __init__(self, config: AlgorithmConfig):
        # Deliberately not calling OfflineData.__init__: it builds the per-batch
        # OfflinePreLearner pipeline this class exists to avoid.
        self.config = config
        self.is_multi_agent = False
        self.path = Path(config.input_)
        self.manifest = shards.read_manifest(self.path)
        self.data: ray.data.Dataset = shards.read_dataset(self.path)
        # Attributes the Algorithm sets on its OfflineData after building learners.
        self.locality_hints: list[str] | None = None
        self.learner_handles: Any = None
        self.module_spec: Any = None
        self.spaces: Any = None
        self.data_is_mapped = False
        self.iter_batches_kwargs: dict[str, Any] = {}
        self._iterators: list[Any] | None = None

    @override(OfflineData)
    def sample(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "DiffCPS learners sample from their resident shard; use learner_iterators()."
        )

    def learner_iterators(self, num_learners: int) -> list[Any]:
        """One Ray Data iterator per learner (disjoint shares); made once and reused.

        ``num_learners`` is 0 for a local learner (which gets one iterator over all rows).
        """
        if self._iterators is None:
            self._iterators = split_for_learners(self.data, num_learners, self.locality_hints)
        return self._iterators


def split_for_learners(
    dataset: ray.data.Dataset, num_learners: int, locality_hints: list[str] | None = None
) -> list[Any]:
    """Iterators over disjoint shares of ``dataset``, one per learner.

    ``streaming_split`` requires all shares to be consumed concurrently (each learner
    materialises its own in the same update call). ``equal=True`` drops at most
    ``num_learners - 1`` rows so that every learner holds the same number of rows.
    """
    if num_learners <= 1:
        if num_learners == 1:
            # A remote learner needs a serialisable iterator: a split of one.
            return dataset.streaming_split(1, equal=False)
        return [dataset.iterator()]
    return dataset.streaming_split(num_learners, equal=True, locality_hints=locality_hints)


def canonical_order(columns: dict[str, Any]) -> np.ndarray:
    """Row permutation sorting by (eps_id, t): a read order that never depends on Ray.

    Ray Data may hand blocks over in any order; sorting makes the resident buffer, and so
    the minibatches drawn by index from a seeded generator, reproducible across runs and
    restores.
    """
    eps_id = np.asarray(_to_numpy(columns["eps_id"]))
    t = np.asarray(_to_numpy(columns["t"]))
    return np.lexsort((t, eps_id))


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
