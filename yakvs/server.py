"""The one yakvs TCP server: asyncio (uvloop when installed) over a :class:`~yakvs.backend.Backend`.

The life cycle follows uvicorn: :meth:`Server.serve` installs signal handlers, runs
:meth:`Server.startup`, waits for an exit request, then :meth:`Server.shutdown` stops accepting,
drains in-flight batches and closes the backend (which flushes and fsyncs the log).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any

from yakvs._conn import Connection
from yakvs.backend import Backend
from yakvs.protocol import DEFAULT_MAX_LINE, Consistency

logger = logging.getLogger(__name__)

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class ServerConfig:
    """Everything the standalone server needs; the CLI builds it and does nothing else."""

    host: str = "127.0.0.1"  # interface to bind; loopback unless asked otherwise
    port: int = 8080  # 0 picks a free port; the bound one is Server.port
    log_path: str = "kvs.log"  # the command log (standalone mode only)
    fsync: str = "everysec"  # always | everysec | no
    repair_log: bool = False  # cut a corrupt log at the first bad record instead of refusing
    max_clients: int = 10000  # further connections get an error reply and are closed
    max_request_size: int = DEFAULT_MAX_LINE  # bytes in one request line; over it: TOO_LARGE
    read_consistency: Consistency = Consistency.LINEARIZABLE  # default for reads (Raft)
    keys_limit: int = 1000  # KEYS without a limit returns at most this many
    max_buffered_bytes: int = 256 << 20  # unfinished request lines of all clients together
    write_high_water: int = 1 << 20  # unsent reply bytes before we stop reading a client
    max_pending_batches: int = 64  # queued batches per connection before we stop reading it
    drain_timeout: float = 10.0  # seconds shutdown waits for in-flight batches
    backlog: int = 1024  # listen(2) backlog
    tick_interval: float = 0.1  # seconds between store ticks (expiry, everysec fsync)


def install_uvloop() -> bool:
    """Use uvloop for new event loops when it is installed; True if it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class Server:
    """Serves ``backend`` over TCP. Without a backend, opens a local store from the config."""

    def __init__(self, config: ServerConfig, backend: Backend | None = None) -> None:
        self.config = config
        self._backend = backend
        self.connections: set[Connection] = set()
        self.inflight: set[asyncio.Future[Any]] = set()
        self.buffered_bytes = 0  # unfinished request lines held by all connections
        self.port: int = config.port
        self.started = False
        self.stopping = False
        # Set from any thread once listening (tests and run_server wait on it).
        self.started_event = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit: asyncio.Event | None = None
        self._force_exit = False

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("the server has no backend before startup()")
        return self._backend

    @property
    def addr(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def serve(self) -> None:
        """Start, serve until SIGINT/SIGTERM or :meth:`request_exit`, then shut down cleanly."""
        self._loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        installed = self._install_signal_handlers()
        try:
            await self.startup()
            await self._exit.wait()
            await self.shutdown()
        finally:
            if self.started:  # cancelled or failed while serving: still close the backend
                await self.shutdown()
            for sig in installed:
                self._loop.remove_signal_handler(sig)

    async def startup(self) -> None:
        """Open the backend and start listening; raises OSError / store errors on failure."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._exit is None:
            self._exit = asyncio.Event()
        if self._backend is None:
            from yakvs.local import open_local_backend

            self._backend = open_local_backend(
                self.config.log_path,
                self.config.fsync,
                repair=self.config.repair_log,
                keys_limit=self.config.keys_limit,
                tick_interval=self.config.tick_interval,
            )
        try:
            await self._backend.start()
            self._server = await loop.create_server(
                lambda: Connection(self),
                self.config.host,
                self.config.port,
                backlog=self.config.backlog,
                reuse_address=True,
            )
        except BaseException:  # nothing is served: release the log before reporting
            await self._backend.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self.started = True
        self.started_event.set()
        logger.info("listening on %s", self.addr)

    def request_exit(self) -> None:
        """Ask :meth:`serve` to shut down; safe from any thread."""
        loop, exit_event = self._loop, self._exit
        if loop is None or exit_event is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(exit_event.set)

    async def shutdown(self) -> None:
        """Stop accepting, drain in-flight batches, close connections, close the backend."""
        if self.stopping:
            return
        self.stopping = True
        logger.info("shutting down")
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.stop_reading()  # a chatty client must not keep the drain going
        await self._drain()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
        if self._backend is not None:
            await self._backend.close()
        self.started = False
        logger.info("stopped")

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while not self._force_exit and loop.time() < deadline:
            busy = [c for c in self.connections if c.busy]
            if not busy and not self.inflight:
                return
            if self.inflight:
                await asyncio.wait(list(self.inflight), timeout=0.05)
            else:
                await asyncio.sleep(0.01)
        if self.inflight:
            logger.warning(
                "shutdown: %d batches still in flight, closing anyway", len(self.inflight)
            )

    def _install_signal_handlers(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        assert self._loop is not None
        installed = []
        for sig in _HANDLED_SIGNALS:
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stopping or (self._exit is not None and self._exit.is_set()):
            logger.warning("second %s: exiting without draining", sig.name)
            self._force_exit = True
        else:
            logger.info("%s received: draining and exiting", sig.name)
        if self._exit is not None:
            self._exit.set()


def run(config: ServerConfig, backend: Backend | None = None) -> None:
    """Run a server in this thread until it is told to stop (the CLI's entry)."""
    install_uvloop()
    asyncio.run(Server(config, backend).serve())
