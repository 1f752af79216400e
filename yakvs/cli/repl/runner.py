"""Running parsed commands: shared by the REPL, one-shot mode and piped scripts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from yakvs.cli._common import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from yakvs.errors import ClientTimeoutError, ConnectionFailedError, YakvsError
from yakvs.protocol import Op, Reply

from .commands import Command, CommandUsageError, help_text, parse_line, parse_words
from .connection import Connection
from .output import Printer

if TYPE_CHECKING:  # the completer pulls in prompt_toolkit, which one-shot runs never need
    from .completer import KeyMemory


def run_command(
    conn: Connection, printer: Printer, command: Command, keys: KeyMemory | None = None
) -> int:
    """Run one command (not QUIT) and print its answer; returns the exit code it deserves.

    Raises ConnectionFailedError: the caller decides whether that ends the run (scripts) or not
    (the REPL).
    """
    if command.request is None:
        printer.text(help_text(command.args[0] if command.args else None))
        return EXIT_OK
    try:
        reply = conn.execute(command.request)
    except ConnectionFailedError:
        raise
    except YakvsError as exc:  # anything else typed the client raised: a failed command
        printer.error(f"error: {exc.message}")
        return EXIT_FAILED
    if conn.reconnected:
        printer.notice(f"reconnected to {conn.address}")
    printer.reply(command, reply)
    if keys is not None:
        remember_keys(keys, command, reply)
    return EXIT_OK if reply.ok else EXIT_FAILED


def remember_keys(keys: KeyMemory, command: Command, reply: Reply) -> None:
    """Feed the completer with keys the server just confirmed (or forget ones it denied)."""
    op = command.spec.op
    if op is Op.KEYS and reply.keys:
        keys.remember(reply.keys)
    elif op in (Op.GET, Op.SET) and reply.ok:
        keys.remember([command.args[0]])
    elif op in (Op.GET, Op.DELETE) and command.args:
        keys.forget(command.args[0])


def connection_message(conn: Connection, exc: ConnectionFailedError) -> str:
    """The client's own message already names the addresses; add what a timeout implies."""
    message = exc.message or f"cannot connect to {conn.seeds}"
    if isinstance(exc, ClientTimeoutError):
        message += " (a write may or may not have been applied)"
    return message


def run_words(conn: Connection, printer: Printer, words: Sequence[str]) -> int:
    """One-shot mode: ``yakvs-client get foo``."""
    try:
        command = parse_words(words)
    except CommandUsageError as exc:
        printer.error(f"error: {exc}")
        return EXIT_USAGE
    if command.spec.name == "QUIT":
        return EXIT_OK
    try:
        return run_command(conn, printer, command)
    except ConnectionFailedError as exc:
        printer.error(f"error: {connection_message(conn, exc)}")
        return EXIT_UNAVAILABLE


def run_lines(conn: Connection, printer: Printer, lines: Iterable[str | bytes]) -> int:
    """Commands piped on stdin, one per line; keeps going after a failed command, as redis-cli.

    Exit code: 3 as soon as the server cannot be reached, else 2 if any line was unusable, else 1
    if any command failed, else 0.
    """
    usage_error = failed = False
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            command = parse_line(line.rstrip("\r\n"))
        except UnicodeDecodeError:
            printer.error(f"error: line {number}: not valid UTF-8")
            usage_error = True
            continue
        except CommandUsageError as exc:
            printer.error(f"error: line {number}: {exc}")
            usage_error = True
            continue
        if command is None:
            continue
        if command.spec.name == "QUIT":
            break
        try:
            failed |= run_command(conn, printer, command) != EXIT_OK
        except ConnectionFailedError as exc:
            printer.error(f"error: line {number}: {connection_message(conn, exc)}")
            return EXIT_UNAVAILABLE
    if usage_error:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK
