"""What every yakvs console script shares: exit codes, logging set-up, address parsing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from yakvs import __version__

EXIT_OK = 0
EXIT_FAILED = 1  # a command failed (key not found included)
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_UNAVAILABLE = 3  # cannot connect / cannot start

_F = TypeVar("_F", bound=Callable[..., Any])

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Every flag also reads YAKVS_<FLAG>: click derives the variable name from this prefix.
CONTEXT_SETTINGS: dict[str, Any] = {
    "auto_envvar_prefix": "YAKVS",
    "help_option_names": ["-h", "--help"],
    "show_default": True,
}


def setup_logging(level: str) -> None:
    """Configure the root logger; only console scripts call this, never library code."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def log_level_option(default: str = "info") -> Callable[[_F], _F]:
    return click.option(
        "--log-level",
        "-log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=default,
        help="Logging verbosity.",
    )


def version_option() -> Callable[[_F], _F]:
    return click.version_option(__version__, "--version", prog_name="yakvs")


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"H:P"``, ``":P"`` or ``"[v6]:P"`` -> ``(host, port)``; raises ValueError when malformed."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    host = host.strip("[]") or default_host
    return host, port


class HostPort(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A click parameter type for ``HOST:PORT`` that reports a clear usage error."""

    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_hostport(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


HOST_PORT = HostPort()
