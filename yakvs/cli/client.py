"""``yakvs-client``: a REPL on a terminal, one command from argv, or commands piped on stdin."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from yakvs.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_FAILED,
    LOG_LEVELS,
    parse_hostport,
    setup_logging,
)
from yakvs.cli._common import version_option as _version_option
from yakvs.cli.repl.commands import help_text
from yakvs.cli.repl.connection import Connection
from yakvs.cli.repl.output import Printer
from yakvs.cli.repl.runner import run_lines, run_words

DEFAULT_ADDR = "127.0.0.1:8080"

logger = logging.getLogger(__name__)


def _parse_addrs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    """Each --addr may also hold a comma-separated list; YAKVS_ADDR is split on whitespace."""
    addrs: list[str] = []
    for item in value:
        for text in filter(None, (part.strip() for part in item.split(","))):
            try:
                host, port = parse_hostport(text)
            except ValueError as exc:
                raise click.BadParameter(str(exc), ctx, param) from None
            addrs.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return addrs


_EPILOG = "\b\n" + help_text().replace("\n\n", "\n") + (
    "\n\nExit codes: 0 ok, 1 command failed (key not found too), 2 usage error, 3 cannot connect."
)


@click.command(
    context_settings={
        **CONTEXT_SETTINGS,
        # Everything after the command name belongs to it: `yakvs-client set k -5` keeps "-5".
        "allow_interspersed_args": False,
    },
    epilog=_EPILOG,
)
@click.option(
    "--addr",
    "-addr",
    "-server",
    "--server",
    "addrs",
    multiple=True,
    envvar="YAKVS_ADDR",
    callback=_parse_addrs,
    metavar="HOST:PORT",
    default=(DEFAULT_ADDR,),
    help="Server to talk to; repeat (or separate with commas) to give cluster seeds.",
)
@click.option("--json", "json_lines", is_flag=True, help="Print each reply as one JSON line.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    help="Seconds to wait for a reply.",
)
@click.option(
    "--log-level",
    "-log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    # Quieter than the servers' "info": log lines would interleave with the answers.
    default="warning",
    help="Logging verbosity (to stderr).",
)
@_version_option()
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def main(
    ctx: click.Context,
    addrs: list[str],
    json_lines: bool,
    timeout: float,
    log_level: str,
    command: tuple[str, ...],
) -> None:
    """Talk to a yakvs server or cluster: a REPL on a terminal, else the COMMAND given, else
    one command per line from stdin (raw output when stdout is not a terminal)."""
    setup_logging(log_level)
    stdout_tty = _isatty(sys.stdout)
    printer = Printer(
        sys.stdout,
        sys.stderr,
        pretty=stdout_tty,
        # https://no-color.org: any non-empty NO_COLOR turns colours off.
        color=stdout_tty and not os.environ.get("NO_COLOR"),
        json_lines=json_lines,
    )
    interactive = not command and _isatty(sys.stdin)
    # One try per seed in the REPL: a dead server should answer in a second, not after backoff.
    conn = Connection(addrs, timeout=timeout, retries=1 if interactive else 3)
    try:
        if command:
            code = run_words(conn, printer, command)
        elif interactive:
            from yakvs.cli.repl.session import run_repl  # prompt_toolkit's app: only when needed

            code = run_repl(conn, printer)
        else:
            # Bytes, decoded line by line, so one bad line is reported by number, not fatal.
            # sys.stdin.buffer: click 8.5 deprecates get_binary_stream, which only returned it.
            code = run_lines(conn, printer, sys.stdin.buffer)
    except BrokenPipeError:
        # `yakvs-client keys | head -1`: the reader left; stop quietly, as cat does.
        _silence_stdout()
        code = EXIT_FAILED
    except Exception as exc:  # the promise is "never a traceback": a bug still gets one line
        logger.debug("unexpected failure", exc_info=True)
        printer.error(f"error: internal error: {exc!r} (run with --log-level debug for details)")
        code = EXIT_FAILED
    finally:
        conn.close()
    ctx.exit(code)


def _silence_stdout() -> None:
    # Python flushes stdout again at exit and would print a second BrokenPipeError.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (CliRunner): nothing to flush
        pass


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams (CliRunner, pipes)
        return False


if __name__ == "__main__":
    main()
