"""experiment.json: which trial directory is which (format in docs/interfaces.md).

The manifest sits at STORAGE/NAME/experiment.json, beside the sweep's one Tune experiment
directory (sweep/, a directory per trial: search_<id>, confirm_<id> or ablation_<id>). It
also records each phase's progress so that ``--resume`` knows what is finished, and the
options the sweep started with so that a resumed sweep runs the same sweep. STORAGE may be
a local directory or any URI pyarrow understands (s3://, gs://, ...).
"""

from __future__ import annotations

import json
import os
import posixpath
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs

FORMAT_VERSION = 2  # 2: one Tune experiment (sweep/) for every task and phase
MANIFEST_NAME = "experiment.json"


class ExperimentStore:
    """Reads and writes files of one experiment directory on a local or remote filesystem."""

    def __init__(self, storage: str, name: str) -> None:
        if "://" in storage:
            self.filesystem, root = pyarrow.fs.FileSystem.from_uri(storage)
            self.uri = f"{storage.rstrip('/')}/{name}"
        else:
            root = os.path.abspath(os.path.expanduser(storage))
            self.filesystem = pyarrow.fs.LocalFileSystem()
            self.uri = os.path.join(root, name)
        self.storage_path = storage if "://" in storage else root
        self.fs_path = posixpath.join(root.rstrip("/"), name) if "://" in storage else self.uri

    def exists(self, relative: str = MANIFEST_NAME) -> bool:
        info = self.filesystem.get_file_info(posixpath.join(self.fs_path, relative))
        return info.type != pyarrow.fs.FileType.NotFound

    def read_json(self, relative: str = MANIFEST_NAME) -> dict[str, Any]:
        with self.filesystem.open_input_stream(posixpath.join(self.fs_path, relative)) as f:
            return json.loads(f.read().decode())

    def write_json(self, data: dict[str, Any], relative: str = MANIFEST_NAME) -> None:
        """Write to a temporary name, then move: a crash never leaves half a manifest."""
        self.filesystem.create_dir(self.fs_path, recursive=True)
        target = posixpath.join(self.fs_path, relative)
        temporary = target + ".tmp"
        with self.filesystem.open_output_stream(temporary) as f:
            f.write((json.dumps(data, indent=2, default=_jsonable) + "\n").encode())
        self.filesystem.move(temporary, target)

    def phase_uri(self, phase_dir: str) -> str:
        """A phase's Tune experiment path as Tune wants it (a local path or a URI)."""
        return f"{self.uri.rstrip('/')}/{phase_dir}"

    def relative(self, trial_path: str) -> str:
        """A trial's path relative to the experiment directory (posix separators)."""
        path = trial_path.split("://", 1)[-1]
        root = self.fs_path.split("://", 1)[-1].rstrip("/") + "/"
        if path.startswith(root):
            return path[len(root):]
        return posixpath.relpath(path, root)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def new_manifest(
    suite: str,
    budget: str,
    command: str,
    options: dict[str, Any],
    behaviour_scores: dict[str, float] | None = None,
) -> dict:
    """A fresh experiment.json; ``behaviour_scores``: the data's behaviour policy per task,
    where the suite knows it (the analysis draws and states scores against it)."""
    return {
        "format_version": FORMAT_VERSION,
        "suite": suite,
        "budget": budget,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "options": options,
        "behaviour_scores": dict(behaviour_scores or {}),
        "phases": {},
        "trials": [],
    }


def replace_trials(manifest: dict, phase: str, task: str | None, trials: list[dict]) -> None:
    """Swap in the trial rows of one phase (and task), keeping every other row."""
    kept = [
        t
        for t in manifest["trials"]
        if not (t["phase"] == phase and (task is None or t["task"] == task))
    ]
    manifest["trials"] = kept + trials
