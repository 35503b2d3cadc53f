"""Shared command-line plumbing: plain one-sentence errors instead of tracebacks."""

from __future__ import annotations

import argparse
import math
import socket
import sys
from collections.abc import Callable
from typing import NoReturn

from diffcps_ray.errors import ConfigError, DiffCPSError


class PlainArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one sentence: ``run_main`` prints it and exits with 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message.rstrip('.')} (see --help).")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (fractions allowed, e.g. GPUs per learner)."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


# Seconds to wait for a cluster's head to accept a connection before giving up on --address.
ADDRESS_TIMEOUT_S = 5.0


def check_ray_address(address: str) -> None:
    """Stop with one sentence unless something listens at ``--address`` (HOST:PORT, auto or
    ray://HOST:PORT). Ray itself retries an unreachable address for minutes, with a
    traceback at the end; this asks once, before any data is prepared or Ray is started."""
    if address.startswith("ray://"):
        target = address.removeprefix("ray://")
    else:
        from diffcps_ray.ray_shims import resolve_ray_address

        try:
            target = resolve_ray_address(address)
        except (ConnectionError, ValueError) as reason:
            raise ConfigError(f"--address {address}: {str(reason).rstrip('.')}.") from None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address} is not HOST:PORT, ray://HOST:PORT or auto.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), ADDRESS_TIMEOUT_S).close()
    except OSError as reason:
        raise ConfigError(
            f"--address {address}: no Ray cluster answers at {host}:{port} "
            f"({reason.strerror or reason}); start one with `ray start --head` or check "
            "the address."
        ) from None


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
