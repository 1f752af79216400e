"""The Redis ops (Op.RSET, Op.MSET, ...) on a standalone store, for :class:`LocalBackend`.

Each handler runs against the store or a batch of it (which holds its lock), using only the
calls both offer (get/set/delete/expire/persist/flush/expires_at/keys), so a command's checks and
its write are one atomic step and its log records go out with the batch. EXPIRE/PEXPIRE/PERSIST
log one E record (the value is not written again), FLUSHALL one F record; SET ... KEEPTTL is a
SET record with the key's exact absolute expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from yakvs.protocol import OK, Op, Reply, Request
from yakvs.rediscompat.keyspace import expire_allowed, scan_keys

if TYPE_CHECKING:
    from yakvs.local import LocalBackend

Handler = Callable[[Request, Any], Reply]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _rset(request: Request, target: Any) -> Reply:
    cond, _get_old, keep_ttl = request.args
    key = request.key
    found = target.get(key)
    old = found[0] if found is not None else None
    if (cond == "NX" and found is not None) or (cond == "XX" and found is None):
        return Reply(result=(False, old))
    now = _now_ms()
    at = request.expires_at
    if keep_ttl and found is not None and found[1] is not None:
        at = target.expires_at(key)  # exact: now + remaining ms would drift by a clock read
    if at is not None and at <= now:
        # EXAT/PXAT in the past: Redis sets and at once expires the key.
        if found is not None:
            target.delete(key)
        return Reply(result=(True, old))
    target.set(key, request.value, expires_at=at)
    return Reply(result=(True, old))


def _mset(request: Request, target: Any) -> Reply:
    args = request.args
    for i in range(0, len(args), 2):
        target.set(args[i], args[i + 1])
    return OK


def _del(request: Request, target: Any) -> Reply:
    return Reply(result=sum(1 for key in request.args if key and target.delete(key)))


def _pexpireat(request: Request, target: Any) -> Reply:
    key, at = request.key, request.expires_at
    if at is None:  # PERSIST
        return Reply(result=int(target.persist(key)))
    if target.get(key) is None:
        return Reply(result=0)
    if not expire_allowed(request.args[0] if request.args else "", target.expires_at(key), at):
        return Reply(result=0)
    if at <= _now_ms():
        target.delete(key)  # Redis deletes a key given an expiry in the past
    else:
        target.expire(key, expires_at=at)
    return Reply(result=1)


def _flush(request: Request, target: Any) -> Reply:
    target.flush()
    return OK


def _mget(request: Request, target: Any) -> Reply:
    out = []
    for key in request.args:
        found = target.get(key) if key else None
        out.append(None if found is None else found[0])
    return Reply(result=out)


def _count(request: Request, target: Any) -> Reply:
    return Reply(result=sum(1 for key in request.args if key and target.get(key) is not None))


def _pttl(request: Request, target: Any) -> Reply:
    found = target.get(request.key) if request.key else None
    if found is None:
        return Reply(result=-2)
    return Reply(result=-1 if found[1] is None else found[1])


def handlers(backend: LocalBackend) -> dict[Op, Handler]:
    """The handlers LocalBackend registers for the Redis ops."""

    def scan(request: Request, target: Any) -> Reply:
        cursor, pattern, count = request.args
        keys = target.keys("")
        return Reply(result=scan_keys(keys, cursor, pattern, count or len(keys) + 1))

    def dbsize(request: Request, target: Any) -> Reply:
        return Reply(result=len(backend.store))

    return {
        Op.RSET: _rset,
        Op.MSET: _mset,
        Op.DEL: _del,
        Op.PEXPIREAT: _pexpireat,
        Op.FLUSH: _flush,
        Op.MGET: _mget,
        Op.COUNT: _count,
        Op.PTTL: _pttl,
        Op.SCAN: scan,
        Op.DBSIZE: dbsize,
    }
