"""Reading metrics out of Tune/RLlib result dicts (no Ray import: analysis uses it too)."""

from __future__ import annotations

from typing import Any


def metric_value(result: dict[str, Any], key: str) -> Any:
    """A metric by its "/"-joined name, flat (progress.csv) or nested (result.json,
    ``Result.metrics``); None when absent."""
    if key in result:
        return result[key]
    node: Any = result
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
