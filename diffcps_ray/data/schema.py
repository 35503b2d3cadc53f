"""The on-disk format: Parquet columns, the manifest, and validation of transitions.

Columns use RLlib's offline names (``obs, actions, rewards, new_obs, terminateds,
truncateds, eps_id, t``) so RLlib's own readers understand the shards as well.
Vectors are ``fixed_size_list<float32>``: Ray Data and pyarrow turn them into
(N, dim) arrays without per-row Python objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from diffcps_ray.errors import DataError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "part-{index:05d}.parquet"
COMPRESSION = "zstd"
DEFAULT_ROWS_PER_SHARD = 250_000

COLUMNS = ("obs", "actions", "rewards", "new_obs", "terminateds", "truncateds", "eps_id", "t")
VECTOR_COLUMNS = ("obs", "actions", "new_obs")
FLOAT_COLUMNS = ("obs", "actions", "rewards", "new_obs")
BOOL_COLUMNS = ("terminateds", "truncateds")
INT_COLUMNS = ("eps_id", "t")


def arrow_schema(obs_dim: int, act_dim: int) -> pa.Schema:
    """The exact Arrow schema of every shard of a task with these dims."""
    return pa.schema(
        [
            pa.field("obs", pa.list_(pa.float32(), obs_dim), nullable=False),
            pa.field("actions", pa.list_(pa.float32(), act_dim), nullable=False),
            pa.field("rewards", pa.float32(), nullable=False),
            pa.field("new_obs", pa.list_(pa.float32(), obs_dim), nullable=False),
            pa.field("terminateds", pa.bool_(), nullable=False),
            pa.field("truncateds", pa.bool_(), nullable=False),
            pa.field("eps_id", pa.int64(), nullable=False),
            pa.field("t", pa.int64(), nullable=False),
        ]
    )


def column_dims(obs_dim: int, act_dim: int) -> dict[str, int]:
    """Width of each vector column."""
    return {"obs": obs_dim, "actions": act_dim, "new_obs": obs_dim}


@dataclass
class ShardInfo:
    """One Parquet file of a task: its name, row count and SHA-256."""

    file: str
    rows: int
    sha256: str


@dataclass
class Manifest:
    """``manifest.json``: what the shards hold and how to check them."""

    task: str
    family: str
    obs_dim: int
    act_dim: int
    num_rows: int
    num_episodes: int
    ref_min_score: float
    ref_max_score: float
    # kind ("d4rl" | "minari" | "generated") plus where it came from (file, sha256, id...).
    source: dict[str, Any]
    shards: list[ShardInfo]
    rows_per_shard: int
    compression: str = COMPRESSION
    format_version: int = FORMAT_VERSION
    created: str = ""
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))
    # The env the data names for evaluation (diffcps_ray.envs.recorded's record, e.g. a
    # Minari dataset's eval_env_spec); None: the task's own simulator. Optional in the
    # file, so manifests written before it existed still load.
    eval_env: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_plain) + "\n"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], path: Path) -> Manifest:
        """Parse a manifest, refusing other format versions and missing fields."""
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(
                f"{path} has format version {version!r}, but this version of diffcps_ray "
                f"reads version {FORMAT_VERSION}; convert the data again."
            )
        try:
            shards = [ShardInfo(**shard) for shard in raw["shards"]]
            fields = {k: raw[k] for k in _REQUIRED_FIELDS}
            optional = {
                k: raw[k] for k in ("compression", "created", "columns", "eval_env") if k in raw
            }
        except (KeyError, TypeError) as error:
            raise DataError(f"{path} is not a valid manifest (problem with {error}).") from None
        eval_env = optional.get("eval_env")
        if eval_env is not None and not isinstance(eval_env, dict):
            raise DataError(f"{path} is not a valid manifest ('eval_env' is not an object).")
        return cls(shards=shards, format_version=version, **fields, **optional)


def _plain(value: Any) -> Any:
    """numpy scalars and paths in a source record, as JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


_REQUIRED_FIELDS = (
    "task",
    "family",
    "obs_dim",
    "act_dim",
    "num_rows",
    "num_episodes",
    "ref_min_score",
    "ref_max_score",
    "source",
    "rows_per_shard",
)


def validate_transitions(
    transitions: Mapping[str, np.ndarray],
    obs_dim: int,
    act_dim: int,
    *,
    origin: str,
    task: str,
) -> None:
    """Check columns, lengths, dims, dtypes and finiteness; raise one DataError sentence.

    ``origin`` names where the arrays came from (a file, a dataset id) so the sentence
    points the user at it.
    """
    missing = [name for name in COLUMNS if name not in transitions]
    if missing:
        raise DataError(f"{origin} is missing the column {missing[0]!r}.")
    num_rows = len(transitions["rewards"])
    if num_rows == 0:
        raise DataError(f"{origin} holds no transitions (key 'rewards' is empty).")
    dims = column_dims(obs_dim, act_dim)
    for name in COLUMNS:
        array = np.asarray(transitions[name])
        if array.shape[0] != num_rows:
            raise DataError(
                f"{origin}: key {name!r} has {array.shape[0]} rows but 'rewards' has {num_rows}."
            )
        expected_shape = (num_rows, dims[name]) if name in dims else (num_rows,)
        if array.shape != expected_shape:
            raise DataError(
                f"{origin}: key {name!r} has shape {array.shape}, but task {task!r} needs "
                f"{expected_shape}."
            )
        if name in FLOAT_COLUMNS:
            if not np.issubdtype(array.dtype, np.floating):
                raise DataError(f"{origin}: key {name!r} has dtype {array.dtype}, not float.")
            finite = np.isfinite(array)
            if not finite.all():
                bad_row = int(np.argwhere(~finite)[0][0])
                raise DataError(
                    f"{origin}: key {name!r} holds NaN or inf (first at row {bad_row})."
                )
        elif name in INT_COLUMNS and not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"{origin}: key {name!r} has dtype {array.dtype}, not integer.")
