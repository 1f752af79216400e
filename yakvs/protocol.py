"""Sans-IO codec for the yakvs wire protocol: bytes in, :class:`Request` out; :class:`Reply` in,
bytes out. No asyncio and no sockets here: the server and both clients share this module.

JSON lines, compatible with the Go original: one JSON object per line each way.
Request: ``{"op": "SET", "key": "k", "value": "v", "expires_in": 300000000000}`` (nanoseconds).
Reply: ``{"status": "success", "value": "v", "ttl": 299999000000}`` or
``{"status": "error", "code": "NOT_FOUND", "message": "Key not found"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Op(StrEnum):
    SET = "SET"
    GET = "GET"
    DELETE = "DELETE"
    TTL = "TTL"
    STATUS = "STATUS"
    PING = "PING"
    EXISTS = "EXISTS"
    KEYS = "KEYS"


class Consistency(StrEnum):
    LINEARIZABLE = "linearizable"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded request; the single definition shared by server and clients."""

    op: Op
    key: str = ""
    value: str = ""
    # Relative expiry in nanoseconds (Go's time.Duration), 0 = no expiry. The node that receives
    # the request turns it into an absolute time, so replicas never read their own clocks.
    expires_in: int = 0
    # KEYS only: prefix filter and the most keys to return (0 = server default).
    prefix: str = ""
    limit: int = 0
    # Reads only: overrides the server's default read consistency.
    consistency: Consistency | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply; ``ok`` False means an error with ``code`` and ``message``."""

    ok: bool = True
    value: str | None = None
    # Remaining time to live in nanoseconds, -1 = no expiry (GET and TTL).
    ttl: int | None = None
    code: str | None = None
    message: str | None = None
    # EXISTS
    exists: bool | None = None
    # KEYS
    keys: tuple[str, ...] | None = None
    # STATUS: {"mode", "version", "role", "leader", "members", "keys", ...}
    info: dict[str, Any] | None = None
    # NOT_LEADER: the leader's client address, when known.
    leader: str | None = None
