"""Replacing a directory in one step: readers find the old whole directory or the new one.

``replace_dir`` writes into a hidden sibling (``.NAME.tmp-PID-RANDOM``, same filesystem so
the final rename is atomic) and then puts it in place. A failure midway removes the sibling
and leaves the old directory as it was; a killed writer may leave the sibling behind, which
the next ``replace_dir`` of the same target removes once the writer's process is gone.
Readers that list a parent directory skip such names with ``is_leftover``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

TMP_MARK = ".tmp-"  # a directory being written
OLD_MARK = ".old-"  # the previous directory, set aside for a moment (non-Linux fallback)


def is_leftover(name: str) -> bool:
    """Whether ``name`` is a hidden staging or set-aside directory, not a finished one."""
    return name.startswith(".") and (TMP_MARK in name or OLD_MARK in name)


def replace_dir(
    target: str | os.PathLike[str], write: Callable[[Path], None], *, overwrite: bool = True
) -> Path:
    """Run ``write(staging)`` on a fresh hidden sibling of ``target``, then publish it there.

    Raises FileExistsError if ``target`` exists and ``overwrite`` is false (also when it
    appeared while writing), NotADirectoryError if it is a file; whatever ``write`` raises
    passes through. The data is fsynced before the rename, so even a power cut cannot
    publish empty files.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(target))
    if target.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    staging = _sibling(target, TMP_MARK)
    try:
        # Inside the try: a Ctrl-C that lands just after the directory is made removes it.
        staging.mkdir()
        write(staging)
        _fsync_tree(staging)
        _publish(staging, target, overwrite)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_leftovers(target: Path) -> None:
    """Clean up after writers of ``target`` that were killed (their process is gone).

    A set-aside old directory goes back to ``target`` if its writer died before the new
    one took its place; otherwise leftovers are deleted.
    """
    for path in sorted(target.parent.iterdir()):
        mark = next((m for m in (TMP_MARK, OLD_MARK) if path.name.startswith(f".{target.name}{m}")),
                    None)  # fmt: skip
        if mark is None or not _writer_is_gone(path, mark):
            continue
        if mark == OLD_MARK and not target.exists():
            os.rename(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _sibling(target: Path, mark: str) -> Path:
    # The pid lets a later writer tell a dead writer's leftover from a live one's work.
    return target.with_name(f".{target.name}{mark}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _writer_is_gone(path: Path, mark: str) -> bool:
    try:
        pid = int(path.name.rsplit(mark, 1)[1].split("-")[0])
        os.kill(pid, 0)  # raises if there is no such process
    except ProcessLookupError:
        return True
    except (ValueError, IndexError, PermissionError):
        pass  # not ours to judge, or its writer is alive under another user
    return False


def _publish(staging: Path, target: Path, overwrite: bool) -> None:
    if not target.exists():
        try:
            # rename refuses to replace a non-empty directory that appeared meanwhile.
            os.rename(staging, target)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and not overwrite:
                raise FileExistsError(errno.EEXIST, "already exists", str(target)) from None
            raise
        return
    if not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    if _exchange(staging, target):
        # Readers saw the old or the new directory, never neither; staging now holds the old.
        shutil.rmtree(staging)
        return
    # Fallback (no renameat2): two renames, with a brief window where target is absent.
    old = _sibling(target, OLD_MARK)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux renameat2(RENAME_EXCHANGE); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            _fsync(Path(directory, name))
        _fsync(Path(directory))


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
