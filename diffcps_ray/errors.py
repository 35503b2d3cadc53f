"""Errors whose message is one plain sentence, shown to the user as is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class DiffCPSError(ValueError):
    """Base class: the message is a complete sentence fit for stderr."""


class UnknownTaskError(DiffCPSError):
    """A task name that the registry does not know."""


class DataError(DiffCPSError):
    """Input data that is missing, malformed or inconsistent."""


class MissingDataError(DataError):
    """A task's shards are not where they were expected."""


class ConfigError(DiffCPSError):
    """A setting outside its valid range."""


def read_json_object(path: Path, error: type[DiffCPSError] = DiffCPSError) -> dict[str, Any]:
    """The JSON object stored at ``path``; ``error`` in one sentence when it cannot be read,
    is not JSON or holds something other than an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as reason:
        raise error(f"{path} is not readable JSON ({reason}).") from None
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object.")
    return data
