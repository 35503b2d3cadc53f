"""Shared command-line plumbing: plain one-sentence errors instead of tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable

from diffcps_ray.errors import DiffCPSError


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run ``main``; a ``DiffCPSError`` becomes ``error: <sentence>`` on stderr and exit 2."""
    try:
        return int(main(argv) or 0)
    except DiffCPSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130
