"""The REPL's bottom toolbar: server address, and in a cluster the node's role and the leader.

STATUS is fetched by a daemon thread with its own short-timeout Client, never by the toolbar
callback itself: prompt_toolkit calls that on every redraw, and a slow server must not stall typing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from yakvs.client import Client
from yakvs.errors import YakvsError
from yakvs.protocol import Op, Request

from .connection import ClientFactory, Connection

logger = logging.getLogger(__name__)


def toolbar_text(address: str, info: dict[str, Any] | None, connected: bool) -> str:
    """One line for the toolbar; pure, so it is tested on strings."""
    parts = [f" {address}"]
    if not connected:
        parts.append("disconnected")
    elif info:
        mode = str(info.get("mode", ""))
        role = info.get("role")
        parts.append(f"{mode} {role}".strip() if role and role != mode else mode)
        clustered = info.get("members") is not None or mode in ("cluster", "raft")
        if clustered and role != "leader":
            parts.append(f"leader {info.get('leader') or 'unknown'}")
    parts.append("HELP for commands, Ctrl-D to quit ")
    return " | ".join(part for part in parts if part)


class StatusPoller:
    """Refreshes STATUS of the address the REPL uses at most every ``interval`` seconds."""

    def __init__(
        self,
        conn: Connection,
        *,
        interval: float = 3.0,
        factory: ClientFactory = Client,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self._interval = interval
        self._factory = factory
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yakvs-toolbar", daemon=True)
        self.info: dict[str, Any] | None = None
        self.connected = True
        self._polled_address = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 2)

    def text(self) -> str:
        return toolbar_text(self._conn.address, self.info, self.connected)

    def _run(self) -> None:
        client: Client | None = None
        while not self._stop.is_set():
            address = self._conn.address
            if client is not None and address != self._polled_address:
                _close(client)
                client = None
            info, connected = None, False
            try:
                if client is None:
                    # One attempt, short timeouts: a stale toolbar is fine, a stuck thread is not.
                    client = self._factory(
                        address, connect_timeout=1.0, request_timeout=1.0, retries=0
                    )
                    self._polled_address = address
                reply = client.execute(Request(op=Op.STATUS))
                info, connected = (reply.info or {}), True
            except (YakvsError, OSError) as exc:
                logger.debug("toolbar STATUS from %s failed: %s", address, exc)
                _close(client)
                client = None
            if (info, connected) != (self.info, self.connected):
                self.info, self.connected = info, connected
                if self.on_change is not None:
                    self.on_change()
            self._stop.wait(self._interval)
        _close(client)


def _close(client: Client | None) -> None:
    if client is not None:
        try:
            client.close()
        except Exception:  # the link is being dropped anyway
            logger.debug("closing the toolbar client failed", exc_info=True)
