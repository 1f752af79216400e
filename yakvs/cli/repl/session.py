"""The interactive loop: prompt, parse, run, print; never dies on a bad line or a lost server."""

from __future__ import annotations

import logging

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.output import create_output

from yakvs.errors import ConnectionFailedError
from yakvs.protocol import Op, Request

from .commands import CommandUsageError, parse_line
from .completer import KeyMemory, YakvsCompleter
from .connection import Connection
from .history import history_path
from .lexer import CommandLexer
from .output import Printer, style
from .runner import connection_message, run_command
from .toolbar import StatusPoller

logger = logging.getLogger(__name__)

PROMPT = FormattedText([("class:prompt", "yakvs> ")])


def _history() -> History:
    path = history_path()
    try:
        # History holds every value typed (passwords too): private, as a shell's history is.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
    except OSError as exc:
        # A read-only home must not cost the user the REPL, only the saved history.
        logger.warning("history disabled: cannot write %s: %s", path, exc)
        return InMemoryHistory()
    return FileHistory(str(path))


def _greet(conn: Connection, printer: Printer) -> None:
    try:
        conn.execute(Request(op=Op.PING))
    except ConnectionFailedError as exc:
        printer.notice(f"{connection_message(conn, exc)}; will retry on the next command")
        return
    except KeyboardInterrupt:  # a hung server: let the user in anyway
        printer.notice(f"no answer yet from {conn.address}; will retry on the next command")
        return
    printer.info(f"Connected to {conn.address}. Type HELP for commands, Ctrl-D to quit.")


def run_repl(conn: Connection, printer: Printer, *, status_interval: float = 3.0) -> int:
    """Run the REPL until QUIT or Ctrl-D; always returns exit code 0."""
    keys = KeyMemory()
    poller = StatusPoller(conn, interval=status_interval)
    session: PromptSession[str] = PromptSession(
        history=_history(),
        auto_suggest=AutoSuggestFromHistory(),
        completer=YakvsCompleter(keys),
        lexer=CommandLexer(),
        complete_while_typing=False,
        bottom_toolbar=poller.text,
        style=style(),
        # Prompt on the terminal even when answers are piped (yakvs-client | tee log).
        output=create_output(always_prefer_tty=True),
        enable_history_search=False,
    )
    poller.on_change = session.app.invalidate
    _greet(conn, printer)
    poller.start()
    try:
        _loop(session, conn, printer, keys)
    finally:
        poller.stop()
        conn.close()
    return 0


def _loop(session: PromptSession[str], conn: Connection, printer: Printer, keys: KeyMemory) -> None:
    while True:
        try:
            line = session.prompt(PROMPT)
        except KeyboardInterrupt:  # Ctrl-C clears the line, as in a shell
            continue
        except EOFError:  # Ctrl-D
            return
        try:
            command = parse_line(line)
        except CommandUsageError as exc:
            printer.error(f"error: {exc}")
            continue
        if command is None:
            continue
        if command.spec.name == "QUIT":
            return
        try:
            run_command(conn, printer, command, keys)
        except ConnectionFailedError as exc:
            printer.notice(f"{connection_message(conn, exc)}; will reconnect on the next command")
        except KeyboardInterrupt:
            # The reply may still arrive and would answer the next request: the link was dropped.
            printer.notice("interrupted; the command may or may not have run")

