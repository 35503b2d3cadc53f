"""An offline transition buffer packed into one contiguous tensor.

One ``index_select`` on a single (N, 2 obs + act + 2) tensor gathers a whole minibatch, far
cheaper than gathering five columns separately (docs/performance.md); the returned
columns are views of that one gathered block.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from diffcps_ray.algorithm.rewards import tune_rewards
from diffcps_ray.errors import DataError

COLUMNS = ("obs", "actions", "rewards", "new_obs", "terminateds")


def _as_2d_float(name: str, values: np.ndarray | Tensor) -> Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)
    tensor = tensor.to(torch.float32)
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(1)
    if tensor.ndim != 2:
        raise DataError(f"Column '{name}' must be 1- or 2-dimensional, got shape "
                        f"{tuple(tensor.shape)}.")  # fmt: skip
    return tensor


class TransitionBuffer:
    """Columns ``obs, actions, rewards, new_obs, terminateds`` packed on ``device``.

    ``rewards`` are tuned once here (``reward_tune``: "none" or "cql_antmaze").
    ``terminateds`` become float 0/1 (``not_done = 1 - terminateds``).
    """

    def __init__(
        self,
        transitions: Mapping[str, np.ndarray | Tensor],
        device: str | torch.device = "cpu",
        reward_tune: str = "none",
    ) -> None:
        missing = [c for c in COLUMNS if c not in transitions]
        if missing:
            raise DataError(f"Transitions lack the column(s) {', '.join(missing)}.")
        columns = {c: _as_2d_float(c, transitions[c]) for c in COLUMNS}
        columns["rewards"] = tune_rewards(columns["rewards"], reward_tune)
        sizes = {c: t.shape[0] for c, t in columns.items()}
        if len(set(sizes.values())) != 1:
            raise DataError(f"Transition columns differ in length: {sizes}.")
        if columns["obs"].shape[1] != columns["new_obs"].shape[1]:
            raise DataError("Columns 'obs' and 'new_obs' differ in width.")
        for c in ("rewards", "terminateds"):
            if columns[c].shape[1] != 1:
                raise DataError(f"Column '{c}' must hold one value per transition.")
        if sizes["obs"] == 0:
            raise DataError("The transition buffer is empty.")
        self.obs_dim = columns["obs"].shape[1]
        self.act_dim = columns["actions"].shape[1]
        self.device = torch.device(device)
        self.data = torch.cat([columns[c] for c in COLUMNS], dim=1).to(self.device).contiguous()
        od, ad = self.obs_dim, self.act_dim
        # column slices of a packed row, in COLUMNS order
        self._slices = {
            "obs": slice(0, od),
            "actions": slice(od, od + ad),
            "rewards": slice(od + ad, od + ad + 1),
            "new_obs": slice(od + ad + 1, 2 * od + ad + 1),
            "terminateds": slice(2 * od + ad + 1, 2 * od + ad + 2),
        }

    def __len__(self) -> int:
        return self.data.shape[0]

    def _split(self, rows: Tensor) -> dict[str, Tensor]:
        batch = {c: rows[:, s] for c, s in self._slices.items()}
        batch["rewards"] = batch["rewards"].squeeze(1)
        batch["terminateds"] = batch["terminateds"].squeeze(1)
        return batch

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """A minibatch drawn uniformly with replacement (``generator`` on this device).

        Returns views into one freshly gathered (batch, width) block: ``obs`` (B, od),
        ``actions`` (B, ad), ``rewards`` (B,), ``new_obs`` (B, od), ``terminateds`` (B,).
        """
        idx = torch.randint(len(self), (batch_size,), generator=generator, device=self.device)
        return self._split(self.data.index_select(0, idx))

    def all(self) -> dict[str, Tensor]:
        """Every transition, as views of the packed tensor."""
        return self._split(self.data)
