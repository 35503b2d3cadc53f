"""An experiment directory on a local or remote file system: STORAGE/NAME.

It holds experiment.json (tune/record.py), Tune's experiment ``sweep/`` (trial
directories ``sweep/<phase>_<trial id>``), the Optuna journals ``optuna/`` and the exported
``policies/``. STORAGE may be a local directory or any URI pyarrow understands (s3://,
gs://, ...).
"""

from __future__ import annotations

import json
import os
import posixpath

import pyarrow.fs

from diffcps_ray.tune.record import RECORD_NAME, ExperimentRecord

SWEEP_DIR = "sweep"  # the Tune experiment inside the experiment directory


def trial_dirname(phase: str, trial_id: str) -> str:
    """A trial's directory name inside ``sweep/`` (Tune's default embeds the whole config)."""
    return f"{phase}_{trial_id}"


def trial_id_of(dirname: str) -> str:
    """The trial id in a trial directory's name (``trial_dirname``'s inverse)."""
    return dirname.split("_", 1)[-1]


def trial_path(phase: str, trial_id: str) -> str:
    """A trial's directory relative to the experiment directory."""
    return posixpath.join(SWEEP_DIR, trial_dirname(phase, trial_id))


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

    def exists(self, relative: str = RECORD_NAME) -> bool:
        info = self.filesystem.get_file_info(posixpath.join(self.fs_path, relative))
        return info.type != pyarrow.fs.FileType.NotFound

    def read_record(self) -> ExperimentRecord:
        path = posixpath.join(self.fs_path, RECORD_NAME)
        with self.filesystem.open_input_stream(path) as f:
            try:
                data = json.loads(f.read().decode())
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                from diffcps_ray.tune.record import RecordError

                raise RecordError(f"{self.uri}/{RECORD_NAME} is not readable JSON ({error}).") \
                    from None
        return ExperimentRecord.from_dict(data, f"{self.uri}/{RECORD_NAME}")

    def write_record(self, record: ExperimentRecord) -> None:
        """Write to a temporary name, then move: a crash never leaves half a record."""
        self.filesystem.create_dir(self.fs_path, recursive=True)
        target = posixpath.join(self.fs_path, RECORD_NAME)
        temporary = posixpath.join(self.fs_path, f".{RECORD_NAME}.tmp")
        with self.filesystem.open_output_stream(temporary) as f:
            f.write(record.to_json().encode())
        self.filesystem.move(temporary, target)

    @property
    def sweep_uri(self) -> str:
        """The Tune experiment's path as Tune wants it (a local path or a URI)."""
        return f"{self.uri.rstrip('/')}/{SWEEP_DIR}"

    def relative(self, trial_path: str) -> str:
        """A trial's path relative to the experiment directory (posix separators)."""
        path = trial_path.split("://", 1)[-1]
        root = self.fs_path.split("://", 1)[-1].rstrip("/") + "/"
        if path.startswith(root):
            return path[len(root):]
        return posixpath.relpath(path, root)
