"""``yakvs-server``: the standalone server. Parses flags into a ServerConfig and runs it."""

from __future__ import annotations

import logging
import sys

import click

from yakvs.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_UNAVAILABLE,
    HOST_PORT,
    log_level_option,
    setup_logging,
    version_option,
)
from yakvs.errors import YakvsError
from yakvs.protocol import DEFAULT_MAX_LINE
from yakvs.server import ServerConfig, run

logger = logging.getLogger(__name__)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--addr", "-addr", type=HOST_PORT, default="127.0.0.1:8080", help="Listen on HOST:PORT."
)
@click.option(
    "--log", "-log", "log", default="kvs.log", type=click.Path(), help="Command log file."
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "everysec", "no"], case_sensitive=False),
    default="everysec",
    help="When the log is fsynced: per write (group commit), once a second, or never.",
)
@click.option("--max-clients", type=click.IntRange(1), default=10000, help="Connection limit.")
@click.option(
    "--max-request-size",
    type=click.IntRange(64),
    default=DEFAULT_MAX_LINE,
    help="Longest request line in bytes.",
)
@click.option(
    "--repair-log", is_flag=True, help="Keep the good prefix of a corrupt log, move the rest aside."
)
@log_level_option()
@version_option()
def main(
    addr: tuple[str, int],
    log: str,
    fsync: str,
    max_clients: int,
    max_request_size: int,
    repair_log: bool,
    log_level: str,
) -> None:
    """Run the standalone yakvs server (JSON lines over TCP, durable command log)."""
    setup_logging(log_level)
    config = ServerConfig(
        host=addr[0],
        port=addr[1],
        log_path=log,
        fsync=fsync.lower(),
        repair_log=repair_log,
        max_clients=max_clients,
        max_request_size=max_request_size,
    )
    try:
        run(config)
    except (OSError, YakvsError) as exc:
        # One clear line, no traceback: a port in use or a bad log is an operator problem.
        click.echo(f"yakvs-server: cannot start: {_describe(exc, config)}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except KeyboardInterrupt:
        pass


def _describe(exc: BaseException, config: ServerConfig) -> str:
    if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
        return f"{config.host}:{config.port}: {exc.strerror or exc}"
    return str(exc)


if __name__ == "__main__":
    main()
