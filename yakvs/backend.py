"""The interface the one :class:`~yakvs.server.Server` serves: a local store or a Raft cluster."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from yakvs.protocol import FastRequest, Reply, Request


class Backend(abc.ABC):
    """Executes decoded requests. Implementations: ``LocalBackend`` (standalone), ``RaftBackend``.

    ``execute`` takes every request one connection had pipelined in one read and returns their
    replies in the same order; a write is acknowledged only once it is durable per the backend's
    policy (fsync for the local log, commit for Raft). Errors are returned as error replies, never
    raised, so one bad request cannot take its neighbours down.
    """

    async def start(self) -> None:  # noqa: B027 -- optional hook, default does nothing
        """Start background work (expiry, fsync timers, Raft ticks); called once by the server."""

    @abc.abstractmethod
    async def execute(self, requests: Sequence[Request | FastRequest]) -> list[Reply]:
        """Run ``requests`` in order and return one reply each.

        A plain SET/GET may arrive as a ``FastRequest`` tuple (the server's hot path skips the
        dataclass); ``protocol.to_request`` turns one into a :class:`Request`.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop background work, flush and fsync what is pending; idempotent."""
