"""The Redis ops in clustered mode: replicated commands, their apply step, and local reads.

The receiving node turns a Request into a command tuple with every time it needs (``now``)
inside, so the apply step is deterministic on every replica; conditions (NX/XX, GET's old value,
KEEPTTL, whether EXPIRE found the key) are decided in the apply step, in log order.

Commands (tuples keep the pickled log entry small):
    ("rset", key, value, expires_at | None, cond, get_old, keep_ttl, now) -> (done, old value)
    ("mset", (k1, v1, k2, v2, ...))                                       -> True
    ("mdel", (k1, k2, ...), now)                                          -> number removed
    ("pexpireat", key, expires_at | None (persist), now, flag)            -> 1 or 0
    ("flush",)                                                            -> True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yakvs.protocol import Op, Reply, Request
from yakvs.rediscompat.keyspace import expire_allowed, scan_keys

if TYPE_CHECKING:
    from yakvs.raft.state import KVState

KINDS = frozenset({"rset", "mset", "mdel", "pexpireat", "flush"})
READ_OPS = frozenset({Op.MGET, Op.COUNT, Op.PTTL, Op.SCAN, Op.DBSIZE})


def command(req: Request, now: int) -> tuple[Any, ...]:
    """The replicated command for a Redis write op (the receiving node's clock in ``now``)."""
    op = req.op
    if op is Op.RSET:
        cond, get_old, keep_ttl = req.args
        return ("rset", req.key, req.value, req.expires_at, cond, get_old, keep_ttl, now)
    if op is Op.MSET:
        return ("mset", tuple(req.args))
    if op is Op.DEL:
        return ("mdel", tuple(req.args), now)
    if op is Op.PEXPIREAT:
        return ("pexpireat", req.key, req.expires_at, now, req.args[0] if req.args else "")
    if op is Op.FLUSH:
        return ("flush",)
    raise ValueError(f"not a Redis write op: {op}")


def size(cmd: tuple[Any, ...]) -> int:
    """Rough bytes of a command, for the write batcher's entry size limit."""
    total = 16
    for item in cmd[1:]:
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, tuple):
            total += sum(len(s) + 8 for s in item)
    return total


def result_reply(result: Any) -> Reply:
    return Reply(result=result)


def apply(state: KVState, cmd: tuple[Any, ...]) -> Any:
    """The apply step (deterministic: no clock, no I/O, never raises on a well-formed command)."""
    kind = cmd[0]
    values, expiry = state._values, state._expiry
    if kind == "rset":
        _, key, value, at, cond, _get_old, keep_ttl, now = cmd
        cur = state.get(key, now)
        old = cur[0] if cur is not None else None
        if (cond == "NX" and cur is not None) or (cond == "XX" and cur is None):
            return (False, old)
        if keep_ttl and cur is not None and cur[1] is not None:
            at = cur[1]
        if at is not None and at <= now:
            values.pop(key, None)
            expiry.pop(key, None)
            return (True, old)
        _put(state, key, value, at)
        return (True, old)
    if kind == "mset":
        pairs = cmd[1]
        for i in range(0, len(pairs), 2):
            _put(state, pairs[i], pairs[i + 1], None)
        return True
    if kind == "mdel":
        _, keys, now = cmd
        removed = 0
        for key in keys:
            if state.get(key, now) is not None:
                removed += 1
            values.pop(key, None)
            expiry.pop(key, None)
        return removed
    if kind == "pexpireat":
        _, key, at, now, flag = cmd
        cur = state.get(key, now)
        if cur is None:
            return 0
        if at is None:
            return 0 if expiry.pop(key, None) is None else 1
        if not expire_allowed(flag, cur[1], at):
            return 0
        if at <= now:
            values.pop(key, None)
            expiry.pop(key, None)
        else:
            expiry[key] = at
            state._index_expiry(key, at)
        return 1
    if kind == "flush":
        values.clear()
        expiry.clear()
        state._rebuild_index()  # drop the expiry index too, or it holds every flushed key
        return True
    return False


def _put(state: KVState, key: str, value: str, at: int | None) -> None:
    state._values[key] = value
    if at is None:
        state._expiry.pop(key, None)
    else:
        state._expiry[key] = at
        state._index_expiry(key, at)


def read(state: KVState, req: Request, now: int) -> Reply:
    """A Redis read op on this replica (after the barrier, for linearizable reads)."""
    op = req.op
    if op is Op.MGET:
        out = []
        for key in req.args:
            found = state.get(key, now)
            out.append(None if found is None else found[0])
        return Reply(result=out)
    if op is Op.COUNT:
        return Reply(result=sum(1 for key in req.args if state.get(key, now) is not None))
    if op is Op.PTTL:
        found = state.get(req.key, now)
        if found is None:
            return Reply(result=-2)
        return Reply(result=-1 if found[1] is None else max(found[1] - now, 0))
    if op is Op.DBSIZE:
        return Reply(result=state.live_count())
    if op is Op.SCAN:
        cursor, pattern, count = req.args
        keys = state.keys("", state.live_count() + 1, now)
        return Reply(result=scan_keys(keys, cursor, pattern, count or len(keys) + 1))
    raise ValueError(f"not a Redis read op: {op}")
