"""Errors whose message is one plain sentence, shown to the user as is."""

from __future__ import annotations


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
