"""The client's link to the server, rebuilt after a connection error.

The REPL must survive a server that goes away and comes back, whatever state the socket was left
in; so on any connection error (or Ctrl-C mid-request, which leaves a reply in flight) we drop the
whole Client and build a fresh one on the next command instead of reusing a suspect socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from yakvs.client import Client
from yakvs.errors import ConnectionFailedError
from yakvs.protocol import Reply, Request

logger = logging.getLogger(__name__)

# Tests of the toolbar thread and the REPL loop can hand in their own Client-like factory.
ClientFactory = Callable[..., Client]


class Connection:
    """Lazily connected :class:`yakvs.client.Client` over the seed addresses."""

    def __init__(
        self,
        addrs: Sequence[str],
        *,
        timeout: float = 5.0,
        retries: int = 3,
        factory: ClientFactory = Client,
    ) -> None:
        self.addrs = list(addrs)
        self.timeout = timeout
        self.retries = retries
        self._factory = factory
        self._client: Client | None = None
        # Set after a failure so the next success can say "reconnected".
        self.lost = False
        # True for one reply: the one that came back over a new link after a failure.
        self.reconnected = False

    @property
    def address(self) -> str:
        """The address in use: the one the client settled on (the leader), else the first seed."""
        return self._client.address if self._client is not None else self.addrs[0]

    @property
    def seeds(self) -> str:
        return ", ".join(self.addrs)

    def execute(self, request: Request) -> Reply:
        """Send one request; a connection error (or timeout) drops the client and is re-raised."""
        try:
            if self._client is None:
                self._client = self._factory(
                    self.addrs if len(self.addrs) > 1 else self.addrs[0],
                    connect_timeout=min(self.timeout, 2.0),
                    request_timeout=self.timeout,
                    retries=self.retries,
                )
            reply = self._client.execute(request)
        except (ConnectionFailedError, KeyboardInterrupt):
            self.lost = True
            self.reset()
            raise
        except OSError as exc:  # the client wraps socket errors; this is belt and braces
            self.lost = True
            self.reset()
            raise ConnectionFailedError(f"{self.address}: {exc}") from exc
        self.reconnected, self.lost = self.lost, False
        return reply

    def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken socket may fail; we are dropping it anyway
                logger.debug("closing a dropped client failed", exc_info=True)

    def close(self) -> None:
        self.reset()
