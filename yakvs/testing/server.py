"""Real yakvs servers for tests: in a thread of this process, or as a child process.

``run_server()`` is the quick one (an event loop in a thread, port 0); ``spawn_server()`` runs
``python -m yakvs.cli.server`` so a test can ``kill()`` it with SIGKILL and ``restart()`` it on the
same port and log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from yakvs.backend import Backend
from yakvs.server import Server, ServerConfig

_LISTENING = re.compile(r"listening on (\S+):(\d+)")


def _log_path(path: str | os.PathLike[str] | None, stack: contextlib.ExitStack) -> Path:
    if path is None:
        path = stack.enter_context(tempfile.TemporaryDirectory(prefix="yakvs-test-"))
    p = Path(path)
    if p.is_dir() or (not p.exists() and not p.suffix):
        # A folder (tmp_path, or tmp_path / "server" not made yet) gets a kvs.log inside.
        p.mkdir(parents=True, exist_ok=True)
        return p / "kvs.log"
    return p


@dataclass
class ServerHandle:
    """A running in-process server."""

    server: Server
    host: str
    port: int
    log_path: Path

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def run_server(
    tmp_path_or_log_path: str | os.PathLike[str] | None = None,
    *,
    backend: Backend | None = None,
    start_timeout: float = 10.0,
    **config: Any,
) -> Iterator[ServerHandle]:
    """Run a real server on 127.0.0.1, port 0, in a thread with its own event loop.

    ``config`` fills :class:`~yakvs.server.ServerConfig` (``fsync="always"``, ``max_clients=..``).
    Startup errors are re-raised here; on exit the server shuts down gracefully.
    """
    with contextlib.ExitStack() as stack:
        log_path = _log_path(tmp_path_or_log_path, stack)
        config.setdefault("host", "127.0.0.1")
        config.setdefault("port", 0)
        server = Server(ServerConfig(log_path=str(log_path), **config), backend)
        failure: list[BaseException] = []

        def main() -> None:
            loop: asyncio.AbstractEventLoop
            try:
                import uvloop

                loop = uvloop.new_event_loop()
            except ImportError:
                loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(server.serve())
            except BaseException as exc:
                failure.append(exc)
            finally:
                loop.close()

        thread = threading.Thread(target=main, name="yakvs-test-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + start_timeout
        while not server.started_event.wait(0.01):
            if failure:
                raise failure[0]
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
        try:
            yield ServerHandle(server, server.config.host, server.port, log_path)
        finally:
            server.request_exit()
            thread.join(start_timeout + server.config.drain_timeout)
            if failure and not isinstance(failure[0], asyncio.CancelledError):
                raise failure[0]


@dataclass
class ProcessHandle:
    """A ``yakvs-server`` child process; survives :meth:`kill` + :meth:`restart` on one port."""

    log_path: Path
    args: list[str]
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 15.0
    _starts: int = 0

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self._starts += 1
        self.stderr_path = self.log_path.parent / f"server-{self.log_path.stem}-{self._starts}.err"
        cmd = [
            sys.executable,
            "-m",
            "yakvs.cli.server",
            "--addr",
            f"{self.host}:{self.port}",
            "--log",
            str(self.log_path),
            *self.args,
        ]
        env = {**os.environ, **self.env}
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = self.stderr()
            found = _LISTENING.search(text)
            if found:
                self.port = int(found.group(2))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"yakvs-server exited {self.proc.returncode}: {text.strip()}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"yakvs-server did not start in {self.start_timeout}s")

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no drain, no fsync -- what a crash or the OOM killer does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def restart(self) -> None:
        """Kill if running, then start again on the same port and log."""
        self.kill()
        self.start()


@contextlib.contextmanager
def spawn_server(
    tmp_path_or_log_path: str | os.PathLike[str] | None = None,
    *args: str,
    env: dict[str, str] | None = None,
    **options: Any,
) -> Iterator[ProcessHandle]:
    """Run ``python -m yakvs.cli.server`` on 127.0.0.1 port 0; extra ``args`` / ``options`` are
    passed as flags (``fsync="always"`` -> ``--fsync always``). Killed on exit."""
    with contextlib.ExitStack() as stack:
        log_path = _log_path(tmp_path_or_log_path, stack)
        flags = list(args)
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                flags.append(flag)
            elif value is not False and value is not None:
                flags += [flag, str(value)]
        handle = ProcessHandle(log_path, flags, env=env or {})
        handle.start()
        try:
            yield handle
        finally:
            handle.kill()


class Wire:
    """A raw protocol connection: send bytes, read reply lines as dicts. Bounded by timeouts."""

    def __init__(self, addr: str, timeout: float = 5.0) -> None:
        host, _, port = addr.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def reply(self) -> dict[str, Any]:
        reply: dict[str, Any] = orjson.loads(self.line())
        return reply

    def call(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.send(orjson.dumps(obj) + b"\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` (reads drain)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(1 << 16):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()
