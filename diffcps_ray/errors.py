"""Errors whose message is one plain sentence, shown to the user as is."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from pydantic import ValidationError


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


def first_line(error: BaseException, limit: int | None = None) -> str:
    """An exception's first non-empty line (its sentence), or its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(error).__name__


def last_line(text: str, limit: int = 500) -> str | None:
    """The last non-empty line of ``text`` (where a wrapped traceback keeps our sentence)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else None


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


# --- pydantic's validation errors as one sentence --------------------------------------------

_KINDS = {
    "int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
    "dict": "a mapping", "dataclass": "a mapping", "list": "a list",
}  # fmt: skip
_BOUNDS = ("gt", "ge", "lt", "le", "multiple_of")


def validation_sentence(error: ValidationError, kind: Any, prefix: tuple[str, ...] = ()) -> str:
    """The first error of validating against type ``kind``, as one sentence (no full stop).

    'KEY must be ALLOWED, got VALUE', with KEY dotted from the top (after ``prefix``) and
    ALLOWED read from the declared type: its kind, its literal values or its whole range
    ('in (0, 1]'); a ``Field(title=...)`` is named after the key, a ``Field(description=...)``
    says why a bound exists. Unknown and missing keys name the keys allowed there.
    """
    detail = error.errors()[0]
    loc = [*prefix, *(str(part) for part in detail["loc"])]
    key, where = ".".join(loc), " in " + ".".join(loc[:-1]) if len(loc) > 1 else ""
    code, ctx, value = detail["type"], detail.get("ctx") or {}, detail.get("input")
    if code in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = ", ".join(sorted(_field_names(_unwrap(_type_at(kind, detail["loc"][:-1])))))
        return f"unknown key {loc[-1]!r}{where} (allowed: {allowed})"
    if code == "missing":
        return f"missing key {loc[-1]!r}{where}"
    if loc and loc[-1] == "[key]":  # a dict key outside a Literal
        where = " in " + ".".join(loc[:-2]) if len(loc) > 2 else ""
        return f"unknown key {loc[-2]!r}{where} (allowed: {ctx.get('expected')})"
    if code == "value_error":  # a model validator's own sentence
        return f"{key}: {ctx['error']}" if loc else str(ctx["error"])
    hint = _type_at(kind, detail["loc"])
    title = _annotation(hint, "title")
    label = f"{key} ({title})" if title else key
    if isinstance(value, float) and not math.isfinite(value):
        allowed = "a finite number"
    elif code == "literal_error":
        allowed = f"one of {ctx.get('expected')}"
    elif code == "too_short":
        allowed = "non-empty"
    elif code.split("_")[0] in _KINDS:  # int_type, int_parsing, int_from_float, float_...
        allowed = _KINDS[code.split("_")[0]]
    elif any(k in ctx for k in _BOUNDS):
        reason = _annotation(hint, "description")
        bounds = _bounds(hint) or {k: ctx[k] for k in _BOUNDS if k in ctx}
        allowed = _bounds_phrase(bounds) + (f" ({reason})" if reason else "")
    else:
        allowed = detail["msg"].removeprefix("Input should be ")
    return f"{label} must be {allowed}, got {value!r}"


def _bounds_phrase(c: dict[str, Any]) -> str:
    """'positive', 'at least 1', '>= 0', 'in (0, 1]', 'a multiple of 2 and at least 4'."""
    low = ("(", c["gt"]) if "gt" in c else ("[", c["ge"]) if "ge" in c else None
    high = (")", c["lt"]) if "lt" in c else ("]", c["le"]) if "le" in c else None
    if low and high:
        phrase = f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    elif low == ("(", 0):
        phrase = "positive"
    elif low == ("[", 0):
        phrase = ">= 0"
    elif low:
        phrase = f"at least {low[1]}" if low[0] == "[" else f"greater than {low[1]}"
    else:
        phrase = f"at most {high[1]}" if high else "valid"
    if "multiple_of" in c:
        phrase = f"a multiple of {c['multiple_of']} and {phrase}"
    return phrase


def _type_at(kind: Any, loc: tuple[Any, ...]) -> Any:
    """The declared type at ``loc`` inside ``kind`` (through dataclass fields and dict values)."""
    for part in loc:
        kind = _unwrap(kind)
        if get_origin(kind) is dict:
            kind = get_args(kind)[1]
        elif dataclasses.is_dataclass(kind):
            kind = get_type_hints(kind, include_extras=True)[part]
    return kind


def _unwrap(kind: Any) -> Any:
    """``kind`` without Annotated metadata and without ``| None``."""
    while get_origin(kind) is Annotated or type(None) in get_args(kind):
        kind = next(a for a in get_args(kind) if a is not type(None))
    return kind


def _metadata(hint: Any) -> list[Any]:
    """Annotated metadata of ``hint`` (and of the non-None member of ``X | None``)."""
    if get_origin(hint) is Annotated:
        return list(get_args(hint)[1:])
    if type(None) in get_args(hint):
        return [m for a in get_args(hint) if a is not type(None) for m in _metadata(a)]
    return []


def _annotation(hint: Any, name: str) -> Any:
    """The last ``Field(name=...)`` set on ``hint`` (``title``, ``description``), or None."""
    found = None
    for item in _metadata(hint):
        found = getattr(item, name, None) or found
    return found


def _bounds(hint: Any) -> dict[str, Any]:
    """All bounds declared on ``hint``: {'gt': 0, 'le': 1}."""
    found: dict[str, Any] = {}
    for item in _metadata(hint):
        for meta in getattr(item, "metadata", [item]):  # a Field() holds its bounds in metadata
            found.update({k: getattr(meta, k) for k in _BOUNDS
                          if getattr(meta, k, None) is not None})  # fmt: skip
    return found


def _field_names(kind: Any) -> list[str]:
    """The keys a dataclass file type takes (``Field(exclude=True)``: set by code, not files)."""
    hints = get_type_hints(kind, include_extras=True)
    return [f.name for f in dataclasses.fields(kind)
            if not any(getattr(m, "exclude", False) for m in _metadata(hints[f.name]))]  # fmt: skip
