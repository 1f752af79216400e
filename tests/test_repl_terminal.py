"""The real REPL in a pseudo-terminal (pexpect) against a real server process.

prompt_toolkit redraws with escape sequences, so we match on short plain-text pieces and answer
its cursor-position requests (CPR) as a terminal would; without answers it hides the toolbar.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
if not hasattr(pytest.importorskip("yakvs.client"), "Client"):
    pytest.skip("needs the client library", allow_module_level=True)
from yakvs.testing.server import spawn_server  # noqa: E402

CPR_REQUEST = "\x1b[6n"
TIMEOUT = 10


class Terminal:
    """A pexpect child that answers CPR requests while waiting for text."""

    def __init__(self, addr: str, home: Path, *extra: str) -> None:
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "xdg"),
            "TERM": "xterm",
            "COLUMNS": "100",
            "LINES": "30",
        }
        env.pop("YAKVS_HISTORY_FILE", None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "yakvs.cli.client", "--addr", addr, *extra],
            env=env,
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(30, 100),
        )
        self.log = home / f"terminal-{os.getpid()}-{id(self)}.log"
        self.child.logfile_read = self.log.open("w")

    def expect(self, pattern: str, *, regex: bool = False) -> str:
        """Wait for ``pattern`` (plain text unless regex); returns the text before it."""
        wanted = pattern if regex else re.escape(pattern)
        seen = ""
        for _ in range(50):  # each redraw may ask for the cursor position once
            index = self.child.expect([re.escape(CPR_REQUEST), wanted])
            seen += self.child.before
            if index == 1:
                return seen
            self.child.send("\x1b[1;1R")
        raise AssertionError(f"too many CPR requests while waiting for {pattern!r}")

    def prompt(self) -> None:
        self.expect("yakvs>")

    def command(self, line: str, *answers: str) -> None:
        """Type a line, wait for each answer in order, then for the next prompt."""
        self.child.sendline(line)
        for answer in answers:
            self.expect(answer)
        self.prompt()

    def close(self) -> int | None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.logfile_read.close()
        return self.child.exitstatus


@pytest.fixture
def server(tmp_path):
    with spawn_server(tmp_path / "server") as handle:
        yield handle


@pytest.fixture
def terminal_factory(tmp_path):
    terminals: list[Terminal] = []

    def make(addr: str, timeout: str = "2") -> Terminal:
        term = Terminal(addr, tmp_path, "--timeout", timeout)
        terminals.append(term)
        return term

    yield make
    for term in terminals:
        term.close()


def test_repl_session_history_completion_ctrl_c_ctrl_d(server, terminal_factory, tmp_path):
    term = terminal_factory(server.addr)
    term.expect(f"Connected to {server.addr}")
    term.prompt()
    # The toolbar names the server and its mode once the first STATUS is in.
    term.expect("standalone")
    term.command('SET "user one" "hello world" 300', "OK")
    term.command('get "user one"', '"hello world"', "expires in 4m 5")
    term.command("FLY", "unknown command 'FLY'")
    term.command('SET k "unbalanced', "no closing quotation")
    # Tab completes a command name, then a key seen above (quoted: it has a space). Redraws
    # split the echo with escape codes, so the answer proves it: "exis user" would be an error.
    term.child.send("exis\t")
    term.child.send(" user\t")
    term.child.send("\r")
    term.expect("yes")
    term.prompt()
    # Up-arrow brings back the last line; run it again.
    term.child.send("\x1b[A")
    term.child.send("\r")
    term.expect("yes")
    term.prompt()
    # Ctrl-C drops the half-typed line instead of running it or exiting.
    term.child.send("del 'user one'")
    term.child.send("\x03")
    term.prompt()
    term.command("exists 'user one'", "yes")
    # Ctrl-D leaves with exit code 0.
    term.child.send("\x04")
    term.child.expect(pexpect.EOF)
    term.child.close()
    assert term.child.exitstatus == 0
    history_file = tmp_path / "xdg" / "yakvs" / "history"
    assert history_file.stat().st_mode & 0o777 == 0o600
    history = history_file.read_text()
    # prompt_toolkit stores a repeated line once; the line dropped by Ctrl-C is not stored.
    assert history.count("+exists 'user one'\n") == 1
    # The history outlives the session: a new REPL recalls the line with up-arrow.
    again = terminal_factory(server.addr)
    again.prompt()
    again.child.send("\x1b[A")
    again.child.send("\r")
    again.expect("yes")
    again.prompt()
    assert "del 'user one'" not in history


def test_repl_survives_server_restart(tmp_path, terminal_factory):
    # fsync=always: the value set before the kill -9 must be there after the restart.
    with spawn_server(tmp_path / "server", fsync="always") as server:
        term = terminal_factory(server.addr)
        term.prompt()
        term.command("set a 1", "OK")
        server.kill()
        term.child.sendline("get a")
        term.expect("will reconnect on the next command")
        term.prompt()
        server.start()  # same port, same log
        term.child.sendline("get a")
        term.expect("reconnected to")
        term.expect('"1"')
        term.prompt()
        term.child.sendline("quit")
        term.child.expect(pexpect.EOF)
        term.child.close()
        assert term.child.exitstatus == 0


class SilentServer:
    """Accepts connections and reads requests but never answers: a hung server.

    Counting the PINGs it received tells the test when the REPL is blocked waiting for a reply,
    so Ctrl-C is sent at a known moment rather than after a guessed sleep.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = b""
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = self.listener.accept()
                conn.setblocking(False)
                self.conns.append(conn)
            for conn in self.conns:
                with contextlib.suppress(BlockingIOError, OSError):
                    self.received += conn.recv(65536)

    def wait_pings(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.received.count(b'"PING"') < count:
            assert time.monotonic() < deadline, f"REPL sent no PING #{count}: {self.received!r}"
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in [*self.conns, self.listener]:
            conn.close()


def test_repl_ctrl_c_interrupts_a_hung_server(terminal_factory):
    silent = SilentServer()
    try:
        term = terminal_factory(silent.addr, timeout="30")
        # The greeting PING hangs: Ctrl-C lets the user in instead of waiting 30 s.
        silent.wait_pings(1)
        term.child.send("\x03")
        term.expect("no answer yet from")
        term.prompt()
        term.child.sendline("ping")
        silent.wait_pings(2)
        term.child.send("\x03")
        term.expect("interrupted; the command may or may not have run")
        term.prompt()
        term.child.send("\x04")
        term.child.expect(pexpect.EOF)
        term.child.close()
        assert term.child.exitstatus == 0
    finally:
        silent.close()


def _one_shot_on_terminal(addr: str, *words: str, **env: str) -> tuple[str, int | None]:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "yakvs.cli.client", "--addr", addr, *words],
        env={**os.environ, "TERM": "xterm", **env},
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    output = child.read()
    child.close()
    return output, child.exitstatus


def test_one_shot_on_a_terminal_is_pretty_and_coloured(server):
    output, status = _one_shot_on_terminal(server.addr, "set", "k", "a b")
    assert status == 0 and "OK" in output and "\x1b[" in output
    output, status = _one_shot_on_terminal(server.addr, "get", "k")
    assert status == 0
    assert '"a b"' in output and "(no expiry)" in output and "\x1b[" in output
    # NO_COLOR keeps the terminal layout but drops the escape codes.
    output, status = _one_shot_on_terminal(server.addr, "get", "k", NO_COLOR="1")
    assert status == 0
    assert '"a b"' in output and "(no expiry)" in output and "\x1b[" not in output
