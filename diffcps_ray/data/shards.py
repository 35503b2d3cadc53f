"""Write a task's transitions as Parquet shards atomically; read them back, verified.

Layout: ``DATA_ROOT/<task>/manifest.json`` + ``part-00000.parquet ...``. The writer
builds everything in a hidden temporary directory beside the target and renames it into
place at the end, so a failed or interrupted run never leaves a half-written task.
Readers check every shard's SHA-256 and schema against the manifest before use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from diffcps_ray.atomic import replace_dir
from diffcps_ray.data.schema import (
    BOOL_COLUMNS,
    COLUMNS,
    COMPRESSION,
    DEFAULT_ROWS_PER_SHARD,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    MANIFEST_NAME,
    SHARD_PATTERN,
    VECTOR_COLUMNS,
    Manifest,
    ShardInfo,
    arrow_schema,
    validate_transitions,
)
from diffcps_ray.errors import DataError, MissingDataError, read_json_object

if TYPE_CHECKING:
    import ray.data
    import torch

Progress = Callable[[str], None]


# --- paths ---------------------------------------------------------------------------------


def task_path(data_root: str | os.PathLike[str], task: str) -> Path:
    """Where a task's shards live, whether or not they exist yet."""
    return Path(data_root).expanduser() / task


def how_to_make(task: str, data_root: str | os.PathLike[str]) -> str:
    """The command that creates a task's data, for error messages."""
    from diffcps_ray.envs.tasks import get_task

    spec = get_task(task)
    root = str(data_root)
    generate = f"python -m diffcps_ray.data generate --task {task} --data-root {root}"
    if spec.d4rl_filename:
        convert = (
            f"python -m diffcps_ray.data convert --d4rl ~/.d4rl/datasets/{spec.d4rl_filename}"
            f" --task {task} --data-root {root}"
        )
        if spec.minari_id:
            convert += f" (or --minari {spec.minari_id})"
        return f"convert it with `{convert}`, or make a simulated stand-in with `{generate}`"
    return f"make it with `{generate}`"


def task_dir(data_root: str | os.PathLike[str], task: str) -> Path:
    """A task's existing data directory; raises MissingDataError saying how to make it."""
    path = task_path(data_root, task)
    if not (path / MANIFEST_NAME).is_file():
        raise MissingDataError(
            f"No data for task {task!r} in {Path(data_root).expanduser()}: "
            f"{how_to_make(task, data_root)}."
        )
    return path


# --- writing -------------------------------------------------------------------------------


def _normalised_columns(transitions: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The columns in their on-disk dtypes (float32, bool, int64), C-contiguous."""
    columns: dict[str, np.ndarray] = {}
    for name in COLUMNS:
        array = np.asarray(transitions[name])
        if name in FLOAT_COLUMNS:
            array = array.astype(np.float32, copy=False)
        elif name in BOOL_COLUMNS:
            array = array != 0 if array.dtype != np.bool_ else array
        else:
            array = array.astype(np.int64, copy=False)
        columns[name] = np.ascontiguousarray(array)
    return columns


def _to_arrow(columns: Mapping[str, np.ndarray], start: int, stop: int, schema: pa.Schema):
    """Rows ``start:stop`` as an Arrow table of ``schema`` (vectors as fixed-size lists)."""
    arrays = []
    for name in COLUMNS:
        part = columns[name][start:stop]
        if name in VECTOR_COLUMNS:
            dim = part.shape[1]
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), dim))
        else:
            arrays.append(pa.array(part))
    return pa.Table.from_arrays(arrays, schema=schema)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def count_episodes(eps_id: np.ndarray) -> int:
    """Episodes are runs of equal eps_id; count the runs (ids need not be sorted)."""
    if len(eps_id) == 0:
        return 0
    return int(np.count_nonzero(eps_id[1:] != eps_id[:-1]) + 1)


def write_shards(
    transitions: Mapping[str, Any],
    task: str,
    data_root: str | os.PathLike[str],
    source: str | Mapping[str, Any],
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    *,
    overwrite: bool = False,
    origin: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Validate ``transitions`` for ``task`` and write them to ``DATA_ROOT/<task>``.

    ``source`` is a kind ("d4rl", "minari", "generated") or a dict with ``kind`` and
    details (file, sha256, dataset id) recorded in the manifest; its ``eval_env`` entry,
    if any (the Minari reader's evaluation env record), becomes the manifest's own
    ``eval_env`` field, checked before anything is written. ``origin`` names the
    input in error sentences (defaults to the source's file or kind). Nothing is created
    before validation passes; the shards appear in one rename at the end. An existing
    task directory is refused unless ``overwrite``, and then replaced in one step.
    """
    from diffcps_ray.envs.tasks import get_task

    spec = get_task(task)
    source_info = {"kind": source} if isinstance(source, str) else dict(source)
    eval_env = source_info.pop("eval_env", None)
    origin = origin or str(source_info.get("file") or source_info.get("kind"))
    if eval_env is not None:
        from diffcps_ray.envs.recorded import RecordedEnv

        # Normalised through the parser, so a bad record fails here, not at evaluation.
        eval_env = RecordedEnv.from_record(eval_env, f"{origin}'s evaluation env").to_record()
    if rows_per_shard < 1:
        raise DataError(f"rows_per_shard must be at least 1, got {rows_per_shard}.")
    validate_transitions(transitions, spec.obs_dim, spec.act_dim, origin=origin, task=task)
    target = task_path(data_root, task)
    if target.exists() and not overwrite:
        raise DataError(f"{target} already exists; pass --overwrite to replace it.")

    columns = _normalised_columns(transitions)
    num_rows = len(columns["rewards"])
    schema = arrow_schema(spec.obs_dim, spec.act_dim)

    def write(staging: Path) -> None:
        shards = []
        for index, start in enumerate(range(0, num_rows, rows_per_shard)):
            stop = min(start + rows_per_shard, num_rows)
            name = SHARD_PATTERN.format(index=index)
            pq.write_table(
                _to_arrow(columns, start, stop, schema), staging / name, compression=COMPRESSION
            )
            shards.append(
                ShardInfo(file=name, rows=stop - start, sha256=sha256_file(staging / name))
            )
            if progress is not None:
                progress(f"wrote {name}: rows {start}..{stop - 1} of {num_rows}")
        manifest = Manifest(
            task=task,
            family=spec.family,
            obs_dim=spec.obs_dim,
            act_dim=spec.act_dim,
            num_rows=num_rows,
            num_episodes=count_episodes(columns["eps_id"]),
            ref_min_score=spec.ref_min_score,
            ref_max_score=spec.ref_max_score,
            source=source_info,
            shards=shards,
            rows_per_shard=rows_per_shard,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            eval_env=eval_env,
        )
        (staging / MANIFEST_NAME).write_text(manifest.to_json())

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"Could not create {target.parent}: {error.strerror or error}.") from None
    try:
        replace_dir(target, write, overwrite=overwrite)
    except FileExistsError:
        raise DataError(f"{target} already exists; pass --overwrite to replace it.") from None
    except OSError as error:
        raise DataError(f"Could not write {target}: {error.strerror or error}.") from error
    return target


# --- reading -------------------------------------------------------------------------------


def _hint_for(task_dir: Path) -> str:
    """How to make a task directory's data, if its name is a known task."""
    from diffcps_ray.envs.tasks import get_task
    from diffcps_ray.errors import UnknownTaskError

    try:
        get_task(task_dir.name)
    except UnknownTaskError:
        return "make it with `python -m diffcps_ray.data generate` or `convert` first"
    return how_to_make(task_dir.name, task_dir.parent)


def read_manifest(task_dir: str | os.PathLike[str]) -> Manifest:
    """Parse ``task_dir/manifest.json``; a missing one raises MissingDataError."""
    root = Path(task_dir).expanduser()
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise MissingDataError(f"{path} does not exist: {_hint_for(root)}.")
    return Manifest.from_dict(read_json_object(path, DataError), path)


def _same_columns(actual: pa.Schema, expected: pa.Schema) -> str | None:
    """The first column whose name or type differs, or None (nullability is ignored)."""
    if actual.names != expected.names:
        extra = [n for n in actual.names if n not in expected.names]
        lacking = [n for n in expected.names if n not in actual.names]
        if lacking:
            return f"column {lacking[0]!r} is missing"
        if extra:
            return f"column {extra[0]!r} is unexpected"
        return f"columns are in the order {actual.names}, not {expected.names}"
    for field in expected:
        found = actual.field(field.name).type
        if found != field.type:
            return f"column {field.name!r} is {found}, expected {field.type}"
    return None


def shard_paths(
    task_dir: str | os.PathLike[str], manifest: Manifest | None = None, *, verify: bool = True
) -> list[Path]:
    """The shard files of a task, in order, each checked against the manifest.

    ``verify`` checks SHA-256 (catches truncation and edits) and the Arrow schema (catches
    a shard written for other dims); both refuse with a DataError naming the file.
    """
    root = Path(task_dir).expanduser()
    manifest = manifest or read_manifest(root)
    expected = arrow_schema(manifest.obs_dim, manifest.act_dim)
    paths = []
    for shard in manifest.shards:
        path = root / shard.file
        if not path.is_file():
            raise DataError(
                f"{path} is listed in the manifest but missing; convert the data again."
            )
        if verify:
            if sha256_file(path) != shard.sha256:
                raise DataError(
                    f"{path} does not match its manifest checksum (changed or truncated); "
                    f"convert the data again."
                )
            try:
                metadata = pq.read_metadata(path)
            except (OSError, pa.ArrowException) as error:
                raise DataError(f"{path} is not a readable Parquet file ({error}).") from None
            problem = _same_columns(metadata.schema.to_arrow_schema(), expected)
            if problem is None and metadata.num_rows != shard.rows:
                problem = f"it has {metadata.num_rows} rows, the manifest says {shard.rows}"
            if problem is not None:
                raise DataError(f"{path} does not match its manifest: {problem}.")
        paths.append(path)
    return paths


def _vector_to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed_size_list column as an (N, dim) numpy array (one copy at most)."""
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    dim = array.type.list_size
    parts = [chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) for chunk in chunks]
    if not parts:
        return np.zeros((0, dim), dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def table_to_numpy(table: pa.Table | pa.RecordBatch) -> dict[str, np.ndarray]:
    """An Arrow table/batch of our schema as numpy columns (vectors as (N, dim))."""
    result = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_fixed_size_list(column.type):
            result[name] = _vector_to_numpy(column)
        else:
            result[name] = column.to_numpy(zero_copy_only=False)
    return result


def load_transitions(
    task_dir: str | os.PathLike[str], *, verify: bool = True
) -> dict[str, np.ndarray]:
    """All transitions of a task as numpy columns (pure pyarrow, no Ray)."""
    root = Path(task_dir).expanduser()
    manifest = read_manifest(root)
    tables = []
    for path in shard_paths(root, manifest, verify=verify):
        try:
            tables.append(pq.read_table(path))
        except (OSError, pa.ArrowException) as error:
            raise DataError(f"{path} is not a readable Parquet file ({error}).") from None
    columns = table_to_numpy(pa.concat_tables(tables))
    if len(columns["rewards"]) != manifest.num_rows:
        raise DataError(
            f"{root} holds {len(columns['rewards'])} rows, but its manifest says "
            f"{manifest.num_rows}; convert the data again."
        )
    return columns


def read_dataset(
    task_dir: str | os.PathLike[str], *, verify: bool = True, **read_parquet_kwargs: Any
) -> ray.data.Dataset:
    """A Ray Dataset over a task's shards, after checking them against the manifest.

    Files are listed explicitly and partitioning is off: a ``key=value`` directory in
    the path would otherwise become a string column that breaks iter_torch_batches.
    """
    import ray.data

    paths = shard_paths(task_dir, verify=verify)
    read_parquet_kwargs.setdefault("partitioning", None)
    # Ray 2.60's V2 Parquet reader lists files in a task with 8 threads that each import
    # fsspec.implementations.http; without aiohttp installed that import fails, and
    # concurrently it can fail as an ImportError Ray does not catch (seen here in 3 of 5
    # runs). The V1 reader resolves our explicit file list once in the driver instead.
    context = ray.data.DataContext.get_current()
    use_v2 = context.use_datasource_v2
    context.use_datasource_v2 = _fsspec_http_importable() and use_v2
    try:
        return ray.data.read_parquet([str(p) for p in paths], **read_parquet_kwargs)
    finally:
        context.use_datasource_v2 = use_v2


def _fsspec_http_importable() -> bool:
    try:
        importlib.import_module("fsspec.implementations.http")
    except ImportError:
        return False
    return True


def _batch_to_numpy(batch: Any) -> dict[str, np.ndarray]:
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        return table_to_numpy(batch)
    if isinstance(batch, Mapping):
        result = {}
        for name, values in batch.items():
            array = np.asarray(values)
            if array.dtype == object:  # a list column handed over as one array per row
                array = np.stack(list(array)) if len(array) else array
            result[name] = array
        return result
    # pandas.DataFrame and anything else with columns
    return _batch_to_numpy({name: batch[name].to_numpy() for name in batch.columns})


def materialize(
    batches: Iterable[Any] | Any,
    device: str | torch.device = "cpu",
    columns: Iterable[str] = COLUMNS,
) -> dict[str, torch.Tensor]:
    """Concatenate batches into one tensor per column, on ``device``.

    ``batches`` is a ray Dataset or DataIterator (a streaming_split shard; read here as
    whole Arrow blocks, the cheapest path) or any iterable of Arrow tables/record batches
    or dicts of numpy arrays. Floats stay float32, terminateds/truncateds become float32
    0/1, eps_id and t int64.
    """
    import torch

    if hasattr(batches, "iter_batches"):
        batches = batches.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2)
    wanted = list(columns)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for batch in batches:
        numpy_batch = _batch_to_numpy(batch)
        for name in wanted:
            if name not in numpy_batch:
                raise DataError(f"A batch has no column {name!r} (it has {sorted(numpy_batch)}).")
            parts[name].append(numpy_batch[name])
    tensors = {}
    for name in wanted:
        if not parts[name]:
            raise DataError("There were no batches to materialize (the dataset is empty).")
        array = np.concatenate(parts[name]) if len(parts[name]) > 1 else parts[name][0]
        if name in BOOL_COLUMNS or name in FLOAT_COLUMNS:
            array = array.astype(np.float32, copy=False)
        elif name in INT_COLUMNS:
            array = array.astype(np.int64, copy=False)
        if not array.flags.writeable:  # zero-copy Arrow views are read-only; torch wants writable
            array = array.copy()
        tensors[name] = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    return tensors
