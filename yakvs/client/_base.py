"""What the sync and async clients share: addresses, request building, reply interpretation and
the retry decisions. Only the I/O differs between them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

from yakvs.errors import KeyNotFoundError, NoLeaderError, NotLeaderError, YakvsError
from yakvs.protocol import Op, Reply, Request, raise_for_error

# Which requests may be sent again after the connection dropped with the request on the wire:
# reads only. A write that may have been applied is never re-sent: even SET of the same value is
# not harmless, because another client may have written the key in between and the repeat would
# silently undo that newer write (a lost update; the fault suite's linearizability checker shows
# it). The caller gets UnknownOutcomeError and decides, e.g. by reading the key back. Requests
# that never reached a server (refused connection, a dead idle connection noticed before
# sending) and NOT_LEADER / NO_LEADER replies (nothing applied) are retried for writes too.
RETRY_SAFE = frozenset({Op.GET, Op.TTL, Op.EXISTS, Op.KEYS, Op.PING, Op.STATUS})
MAX_REDIRECTS = 5
_NS = 1_000_000_000


def parse_addrs(addrs: str | Sequence[str]) -> list[str]:
    """``"h:p"``, ``"h1:p1,h2:p2"`` or a list of them -> list of ``"h:p"``."""
    items = addrs.split(",") if isinstance(addrs, str) else list(addrs)
    result = [a.strip() for a in items if a and a.strip()]
    if not result:
        raise ValueError("no server address given")
    for addr in result:
        split_addr(addr)
    return result


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def retry_safe(requests: Sequence[Request]) -> bool:
    return all(r.op in RETRY_SAFE for r in requests)


def redirect_target(reply: Reply) -> str | None:
    """The leader a NOT_LEADER reply names, if any."""
    if not reply.ok and reply.code == NotLeaderError.code and reply.leader:
        return reply.leader
    return None


def is_no_leader(reply: Reply) -> bool:
    return not reply.ok and reply.code in (NoLeaderError.code, NotLeaderError.code)


def set_request(key: str, value: str, ttl: float | None) -> Request:
    if ttl is None:
        return Request(Op.SET, key, value)
    if ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds (None = no expiry)")
    # At least 1 ns: a TTL must never round down to 0, which means "no expiry" on the wire.
    return Request(Op.SET, key, value, max(1, round(ttl * _NS)))


def keys_request(prefix: str, limit: int) -> Request:
    return Request(Op.KEYS, prefix=prefix, limit=limit)


def _ttl_seconds(reply: Reply) -> float | None:
    return None if reply.ttl is None or reply.ttl < 0 else reply.ttl / _NS


def _ok(reply: Reply) -> None:
    raise_for_error(reply)


def _get(reply: Reply) -> str:
    return raise_for_error(reply).value or ""


def _delete(reply: Reply) -> bool:
    if not reply.ok and reply.code == KeyNotFoundError.code:
        return False
    raise_for_error(reply)
    return True


def _ttl(reply: Reply) -> float | None:
    return _ttl_seconds(raise_for_error(reply))


def _exists(reply: Reply) -> bool:
    return bool(raise_for_error(reply).exists)


def _keys(reply: Reply) -> list[str]:
    return list(raise_for_error(reply).keys or ())


def _value(reply: Reply) -> str:
    return raise_for_error(reply).value or ""


def _info(reply: Reply) -> dict[str, Any]:
    return dict(raise_for_error(reply).info or {})


RESULT: dict[Op, Callable[[Reply], Any]] = {
    Op.SET: _ok,
    Op.GET: _get,
    Op.DELETE: _delete,
    Op.TTL: _ttl,
    Op.EXISTS: _exists,
    Op.KEYS: _keys,
    Op.PING: _value,
    Op.STATUS: _info,
}


def get_with_ttl(reply: Reply) -> tuple[str, float | None]:
    raise_for_error(reply)
    return reply.value or "", _ttl_seconds(reply)


def pipeline_results(
    requests: Sequence[Request], replies: Sequence[Reply], raise_on_error: bool
) -> list[Any]:
    """Each reply turned into what the matching single-call method returns; errors in place
    (``raise_on_error=False``) or the first one raised after all were read."""
    results: list[Any] = []
    first: YakvsError | None = None
    for request, reply in zip(requests, replies, strict=True):
        try:
            results.append(RESULT[request.op](reply))
        except YakvsError as exc:
            first = first or exc
            results.append(exc)
    if first is not None and raise_on_error:
        raise first
    return results


class PipelineCommands:
    """The queueing half of a pipeline, shared by the sync and async ones: the client's method
    names, each adding one request; the subclasses send them."""

    def __init__(self) -> None:
        self._requests: list[Request] = []

    def __len__(self) -> int:
        return len(self._requests)

    def _add(self, request: Request) -> Self:
        self._requests.append(request)
        return self

    def set(self, key: str, value: str, ttl: float | None = None) -> Self:
        return self._add(set_request(key, value, ttl))

    def get(self, key: str) -> Self:
        return self._add(Request(Op.GET, key))

    def delete(self, key: str) -> Self:
        return self._add(Request(Op.DELETE, key))

    def ttl(self, key: str) -> Self:
        return self._add(Request(Op.TTL, key))

    def exists(self, key: str) -> Self:
        return self._add(Request(Op.EXISTS, key))

    def keys(self, prefix: str = "", limit: int = 0) -> Self:
        return self._add(keys_request(prefix, limit))

    def ping(self) -> Self:
        return self._add(Request(Op.PING))

    def status(self) -> Self:
        return self._add(Request(Op.STATUS))
