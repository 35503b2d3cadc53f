"""diffcps_ray.atomic: a replaced directory is the old one or the new one, whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffcps_ray import atomic
from diffcps_ray.atomic import is_leftover, remove_leftovers, replace_dir

ROOT = Path(__file__).resolve().parents[1]
FILES = 30  # per generation: enough that a kill often lands while one is half written


def _generation(k: int):
    def write(directory: Path) -> None:
        for i in range(FILES):
            (directory / f"{i:02d}.txt").write_text(f"generation {k}\n" * 200)

    return write


def _generations_in(directory: Path) -> set[str]:
    """The generation lines of a directory's files; one element if it is whole."""
    names = sorted(p.name for p in directory.iterdir())
    assert names == [f"{i:02d}.txt" for i in range(FILES)]
    return {line for p in directory.iterdir() for line in p.read_text().splitlines()}


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_new_directory_replaces_the_old_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    assert replace_dir(target, _generation(1)) == target
    replace_dir(target, _generation(2))
    assert _generations_in(target) == {"generation 2"}
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_failure_midway_keeps_the_old_directory_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    replace_dir(target, _generation(1))

    def half_then_fail(directory: Path) -> None:
        (directory / "00.txt").write_text("generation 2\n")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        replace_dir(target, half_then_fail)
    assert _generations_in(target) == {"generation 1"}
    assert _hidden(tmp_path) == []


def test_a_failed_publish_puts_the_old_directory_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out"
    replace_dir(target, _generation(1))
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(source: Path, destination: Path) -> None:
        if atomic.TMP_MARK in Path(source).name:  # staging -> target, the publishing rename
            raise OSError(28, "No space left on device")
        real_rename(source, destination)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="No space"):
        replace_dir(target, _generation(2))
    assert _generations_in(target) == {"generation 1"}
    assert _hidden(tmp_path) == []


def test_an_existing_directory_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    replace_dir(target, _generation(1))
    with pytest.raises(FileExistsError):
        replace_dir(target, _generation(2), overwrite=False)
    assert _generations_in(target) == {"generation 1"}
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        replace_dir(tmp_path / "file", _generation(2))
    assert _hidden(tmp_path) == []


def test_leftovers_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "out"
    dead_tmp = tmp_path / ".out.tmp-999999999-abcdef12"  # no such pid
    live_tmp = tmp_path / f".out.tmp-{os.getpid()}-abcdef12"
    other = tmp_path / ".other.tmp-999999999-abcdef12"  # another target's
    for path in (dead_tmp, live_tmp, other):
        path.mkdir()
    # A writer killed between its two renames: the old directory is set aside, none in place.
    dead_old = tmp_path / ".out.old-999999999-abcdef12"
    dead_old.mkdir()
    _generation(1)(dead_old)
    remove_leftovers(target)
    assert _generations_in(target) == {"generation 1"}
    assert _hidden(tmp_path) == sorted([live_tmp.name, other.name])
    assert all(is_leftover(name) for name in _hidden(tmp_path))
    assert not is_leftover("out") and not is_leftover(".hidden")


WRITER = """
import sys
from pathlib import Path
from diffcps_ray import atomic
if sys.argv[2] == "two-renames":
    atomic._exchange = lambda a, b: False
target, files = Path(sys.argv[1]), int(sys.argv[3])
k = 0
while True:
    k += 1
    def write(directory, k=k):
        for i in range(files):
            (directory / f"{i:02d}.txt").write_text(f"generation {k}\\n" * 200)
    atomic.replace_dir(target, write)
    print(k, flush=True)
"""


@pytest.mark.parametrize("mode", ["renameat2", "two-renames"])
def test_a_killed_writer_leaves_the_old_or_the_new_directory(tmp_path: Path, mode: str) -> None:
    target = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.0, 0.003, 0.011, 0.029, 0.047):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), mode, str(FILES)],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert writer.stdout is not None
        writer.stdout.readline()  # one generation is in place
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        if mode == "two-renames":
            # Killed between the renames, the old directory waits aside for the next writer.
            remove_leftovers(target)
        assert len(_generations_in(target)) == 1
        assert all(is_leftover(name) for name in _hidden(tmp_path))
    replace_dir(target, _generation(0))  # the next writer removes the dead ones' leftovers
    assert _hidden(tmp_path) == []
