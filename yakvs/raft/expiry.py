"""Leader-side expiry: propose ``expire(key, expected_expiry)`` through the log for keys whose
time has come. Replicas never expire keys on their own clocks (they would diverge); reads hide
expired keys until the removal is applied."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from yakvs.raft.batch import WriteBatcher
from yakvs.raft.state import KVState

# Keys proposed per round at most; the next round (100 ms later) takes the rest.
_BUDGET = 5000


class Expirer:
    def __init__(self, state: KVState, writes: WriteBatcher) -> None:
        self._state = state
        self._writes = writes
        # Proposed and not yet answered: not proposed again meanwhile.
        self._expiring: set[str] = set()

    def propose(self, now_ms: int) -> None:
        for key, expiry in self._state.expired_sample(now_ms, budget=_BUDGET):
            if key in self._expiring:
                continue
            self._expiring.add(key)
            fut = self._writes.submit(("expire", key, expiry))
            fut.add_done_callback(partial(self._done, key=key, expiry=expiry))

    def _done(self, fut: asyncio.Future[Any], *, key: str, expiry: int) -> None:
        self._expiring.discard(key)
        if fut.cancelled() or fut.exception() is not None:
            self._state.requeue(key, expiry)  # proposed again on a later round
