"""Make sure every task of a sweep has its shards before Ray starts.

Generated suites (PointMaze) generate missing data with progress shown. D4RL suites convert
files found in the usual download folders (or --data-root); when a file is nowhere to be
found the sweep stops before starting Ray with one sentence naming what it looked for.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from diffcps_ray.errors import MissingDataError
from diffcps_ray.tune.suites import Suite

MANIFEST_NAME = "manifest.json"


def d4rl_dirs(data_root: Path) -> list[Path]:
    """Where D4RL's downloader puts its HDF5 files, then the data root itself."""
    dirs = []
    if os.environ.get("D4RL_DATASET_DIR"):
        dirs.append(Path(os.environ["D4RL_DATASET_DIR"]).expanduser())
    dirs += [Path("~/.d4rl/datasets").expanduser(), data_root]
    return dirs


def minari_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("MINARI_DATASETS_PATH"):
        dirs.append(Path(os.environ["MINARI_DATASETS_PATH"]).expanduser())
    dirs.append(Path("~/.minari/datasets").expanduser())
    return dirs


@dataclass(frozen=True)
class Found:
    """A source for a missing task: a D4RL file or a Minari dataset id."""

    task: str
    kind: str  # "d4rl" | "minari"
    location: str


def _read_manifest(task_dir: Path) -> dict | None:
    try:
        manifest = json.loads((task_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _row_count(manifest: dict) -> int | None:
    rows = manifest.get("num_rows", manifest.get("rows"))
    return int(rows) if isinstance(rows, int) else None


def prepare_data(
    suite: Suite,
    tasks: list[str],
    data_root: Path,
    transitions: int | None,
    log=print,
) -> None:
    """Generate or convert whatever is missing; raise MissingDataError if that is impossible."""
    if suite.data_source == "generate":
        for task in tasks:
            _ensure_generated(task, data_root, transitions or 200_000, suite.data_seed, log)
        return
    missing = [t for t in tasks if not (data_root / t / MANIFEST_NAME).is_file()]
    found, not_found = [], []
    for task in missing:
        source = find_source(task, data_root)
        (found if source else not_found).append(source or task)
    if not_found:
        raise MissingDataError(missing_sentence(not_found, data_root))
    for source in found:
        _convert(source, data_root, log)


def _ensure_generated(task: str, data_root: Path, transitions: int, seed: int, log) -> None:
    from diffcps_ray.data.generate import GENERATOR_VERSION, generate_dataset
    from diffcps_ray.data.shards import write_shards

    task_dir = data_root / task
    manifest = _read_manifest(task_dir)
    have = None if manifest is None else _row_count(manifest)
    source = (manifest or {}).get("source") or {}
    same_recipe = (
        source.get("generator_version") == GENERATOR_VERSION and source.get("seed") == seed
    )
    if have is not None and have >= transitions and same_recipe:
        return
    # Smaller data (say, from a smoke run) or data from an older recipe or another seed is
    # replaced; write_shards swaps it in one rename.
    reason = "" if manifest is None else (
        " (replacing data of an older recipe or another seed)" if not same_recipe
        else f" (replacing {have or 0:,} rows)"
    )
    log(f"Generating {transitions:,} transitions for {task} in {data_root}{reason} ...")
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(f"\r  {task}: {done:,}/{total:,} transitions", end="", file=sys.stderr, flush=True)

    data = generate_dataset(task, transitions, seed, progress=progress)
    print(file=sys.stderr)
    write_shards(
        data,
        task,
        data_root,
        {
            "kind": "generated",
            "seed": seed,
            "transitions": transitions,
            "generator_version": GENERATOR_VERSION,
        },
        overwrite=manifest is not None,
    )
    log(f"  wrote {task_dir} in {time.monotonic() - start:.0f} s.")


def find_source(task: str, data_root: Path) -> Found | None:
    """The first D4RL file or Minari dataset for ``task`` in the usual places."""
    from diffcps_ray.envs.tasks import get_task

    spec = get_task(task)
    if spec.d4rl_filename:
        for directory in d4rl_dirs(data_root):
            path = directory / spec.d4rl_filename
            if path.is_file():
                return Found(task, "d4rl", str(path))
    if spec.minari_id:
        for directory in minari_dirs():
            if (directory / spec.minari_id / "data" / "main_data.hdf5").is_file():
                return Found(task, "minari", spec.minari_id)
    return None


def missing_sentence(tasks: list[str], data_root: Path) -> str:
    """One sentence: which files were looked for where, and the command that converts one."""
    from diffcps_ray.envs.tasks import get_task

    names = []
    for task in tasks:
        spec = get_task(task)
        names.append(spec.d4rl_filename or task)
        if spec.minari_id:
            names[-1] += f" (or Minari {spec.minari_id})"
    places = ", ".join(str(d) for d in d4rl_dirs(data_root))
    if any(get_task(t).minari_id for t in tasks):
        places += " and " + ", ".join(str(d) for d in minari_dirs())
    example = tasks[0]
    return (
        f"No data for {len(tasks)} task(s) of this suite: looked for {', '.join(names)} in "
        f"{places}; download them and convert each with `python -m diffcps_ray.data convert "
        f"--d4rl FILE.hdf5 --task {example} --data-root {data_root}` (or --minari DATASET_ID)"
    ) + "."


def _convert(source: Found, data_root: Path, log) -> None:
    # The data CLI owns conversion (validation, progress, atomic writes); run it as is.
    import subprocess

    flag = "--d4rl" if source.kind == "d4rl" else "--minari"
    command = [
        sys.executable, "-m", "diffcps_ray.data", "convert", flag, source.location,
        "--task", source.task, "--data-root", str(data_root),
    ]
    log(f"Converting {source.location} for {source.task} ...")
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise MissingDataError(
            f"Converting {source.location} for {source.task} failed (see above); "
            f"run `{' '.join(command)}` to retry."
        )
