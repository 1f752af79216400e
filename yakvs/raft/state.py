"""The replicated state machine: the key-value data and the node registry, in a SyncObjConsumer.

Apply functions (the ``@replicated`` bodies) are deterministic: they never read a clock, never do
I/O and never raise on bad input, because every replica runs them on the same log and must reach
the same state. Times they need (absolute expiry, "now" for a delete) are computed by the node
that received the request and travel inside the command.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

from pysyncobj import SyncObjConsumer, replicated

from yakvs.rediscompat import raft as redis_ops

logger = logging.getLogger(__name__)

# One write inside a batch entry. Tuples keep the pickled log entry small.
#   ("set", key, value, expiry_ms | None)
#   ("del", key, now_ms)                  -> True if the key existed and had not expired at now_ms
#   ("expire", key, expected_expiry_ms)   -> True if removed (only if its expiry is unchanged)
WriteCommand = tuple[Any, ...]


class KVState(SyncObjConsumer):
    """Keys, values, absolute expiries (epoch ms) and the member registry, replicated by Raft."""

    def __init__(self) -> None:
        # Set before SyncObjConsumer.__init__ so pysyncobj leaves it out of snapshots: a local
        # index of expiries (min-heap of (expiry_ms, key), stale entries skipped when popped)
        # so the leader finds expired keys without scanning the keyspace.
        self._expiry_heap: list[tuple[int, str]] = []
        super().__init__()
        self._values: dict[str, str] = {}
        self._expiry: dict[str, int] = {}
        # node id -> {"raft": H:P, "tcp": H:P, "api": H:P}
        self._members: dict[str, dict[str, str]] = {}
        # ids that left or were removed: they must not come back with their old data
        self._removed: set[str] = set()

    # -- replicated writes -------------------------------------------------------------------

    @replicated
    def apply_batch(self, commands: list[WriteCommand]) -> list[Any]:
        """Apply many client writes as one log entry; returns one result per command."""
        return [self._apply_one(cmd) for cmd in commands]

    @replicated
    def set(self, key: str, value: str, expiry_ms: int | None = None) -> bool:
        return bool(self._apply_one(("set", key, value, expiry_ms)))

    @replicated
    def delete(self, key: str, now_ms: int) -> bool:
        return bool(self._apply_one(("del", key, now_ms)))

    @replicated
    def expire(self, key: str, expected_expiry_ms: int) -> bool:
        return bool(self._apply_one(("expire", key, expected_expiry_ms)))

    @replicated
    def barrier(self) -> None:
        """A no-op through the log: once applied here, this replica has seen every earlier write."""
        return None

    @replicated
    def add_member(self, node_id: str, raft: str, tcp: str, api: str) -> bool:
        self._members[node_id] = {"raft": raft, "tcp": tcp, "api": api}
        self._removed.discard(node_id)
        return True

    @replicated
    def remove_member(self, node_id: str) -> bool:
        existed = self._members.pop(node_id, None) is not None
        self._removed.add(node_id)
        return existed

    def _apply_one(self, cmd: WriteCommand) -> Any:
        # A bool for set/del/expire; a Redis command's own result (rediscompat.raft) otherwise.
        kind = cmd[0]
        if kind == "set":
            _, key, value, expiry_ms = cmd
            self._values[key] = value
            if expiry_ms is None:
                self._expiry.pop(key, None)
            else:
                old = self._expiry.get(key)
                self._expiry[key] = expiry_ms
                # The index only needs an entry no later than the expiry (see expired_sample):
                # a key refreshed to a later expiry keeps its earlier entry, no push.
                if old is None or expiry_ms < old:
                    self._index_expiry(key, expiry_ms)
            return True
        if kind == "del":
            _, key, now_ms = cmd
            if key not in self._values:
                return False
            expiry = self._expiry.pop(key, None)
            del self._values[key]
            return expiry is None or expiry > now_ms
        if kind == "expire":
            _, key, expected = cmd
            # Conditional: a SET that refreshed the key after the leader proposed this wins.
            current = self._expiry.get(key)
            if current != expected:
                if current is not None:
                    # The sample took the key's index entry off; it still expires later.
                    self._index_expiry(key, current)
                return False
            del self._expiry[key]
            self._values.pop(key, None)
            return True
        if kind in redis_ops.KINDS:
            return redis_ops.apply(self, cmd)
        logger.error("ignoring unknown replicated command %r", kind)
        return False

    # -- local reads (callers pass their own clock) ------------------------------------------

    def get(self, key: str, now_ms: int) -> tuple[str, int | None] | None:
        """``(value, expiry_ms)`` or None when missing or expired at ``now_ms``."""
        value = self._values.get(key)
        if value is None:
            return None
        expiry = self._expiry.get(key)
        if expiry is not None and expiry <= now_ms:
            return None
        return value, expiry

    def keys(self, prefix: str, limit: int, now_ms: int) -> list[str]:
        out: list[str] = []
        for key in self._values:
            if key.startswith(prefix) and self.get(key, now_ms) is not None:
                out.append(key)
                if len(out) >= limit:
                    break
        return sorted(out)

    def live_count(self) -> int:
        return len(self._values)

    def members(self) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self._members.items()}

    def is_removed(self, node_id: str) -> bool:
        return node_id in self._removed

    def dump(self) -> dict[str, Any]:
        """Everything replicated, for tests comparing replicas."""
        return {
            "values": dict(self._values),
            "expiry": dict(self._expiry),
            "members": self.members(),
        }

    def _index_expiry(self, key: str, expiry_ms: int) -> None:
        heap = self._expiry_heap
        heapq.heappush(heap, (expiry_ms, key))
        if len(heap) > 2 * len(self._expiry) + 10_000:
            # Mostly stale entries (keys refreshed or deleted): rebuild, amortised O(1).
            self._rebuild_index()

    def _rebuild_index(self) -> None:
        self._expiry_heap = [(exp, key) for key, exp in self._expiry.items()]
        heapq.heapify(self._expiry_heap)

    def _deserialize(self, data: dict[str, Any]) -> None:
        # A snapshot was loaded (restart or catch-up): the local index must follow it.
        super()._deserialize(data)
        self._rebuild_index()

    def expired_sample(self, now_ms: int, budget: int) -> list[tuple[str, int]]:
        """Up to ``budget`` keys expired at ``now_ms``, earliest first, taken off the index.
        A caller whose removal fails hands them back with :meth:`requeue`."""
        # Invariant: every key with an expiry E has an index entry at or before E (a refresh
        # to a later expiry pushes nothing). An entry earlier than the key's expiry is moved
        # to it; one later than it is a leftover (the earlier entry exists) and is dropped.
        found: list[tuple[str, int]] = []
        heap = self._expiry_heap
        expiries = self._expiry
        while heap and len(found) < budget and heap[0][0] <= now_ms:
            expiry, key = heapq.heappop(heap)
            current = expiries.get(key)
            if current == expiry:
                found.append((key, expiry))
            elif current is not None and current > expiry:
                heapq.heappush(heap, (current, key))
        return found

    def requeue(self, key: str, expiry_ms: int) -> None:
        # The key may have been refreshed meanwhile (which pushes nothing when later): index
        # its current expiry, whatever it is.
        current = self._expiry.get(key)
        if current is not None:
            heapq.heappush(self._expiry_heap, (current, key))
