"""Expiry times of the keys that have one, laid out for O(1) random sampling.

The active expiry cycle must sample random keys that carry a TTL (as Redis does) without ever
scanning the whole keyspace. A dict cannot be sampled at random, so the keys with an expiry also
live in a list; ``_pos`` maps a key to its slot so removal is a swap with the last slot.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator

from yakvs.errors import BadRequestError

# TTLs beyond this are rejected as a likely unit mistake (e.g. nanoseconds passed as seconds).
MAX_TTL_MS = 100 * 365 * 86_400_000
# 9999-12-31T23:59:59.999Z; an absolute bound, so replicas never disagree on validity.
MAX_EXPIRES_AT = 253_402_300_799_999


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class GetDerivedReads:
    """``ttl`` and ``exists`` as the Store and a store Batch both answer them: from ``get``."""

    __slots__ = ()

    def get(self, key: str) -> tuple[str, int | None] | None:
        raise NotImplementedError

    def ttl(self, key: str) -> int:
        """Remaining ms; -1 = no expiry, -2 = missing (the Redis convention)."""
        got = self.get(key)
        if got is None:
            return -2
        return -1 if got[1] is None else got[1]

    def exists(self, key: str) -> bool:
        return self.get(key) is not None


class Expiries:
    """key -> absolute expiry (epoch ms) of keys that have one. Not thread-safe: the store locks."""

    __slots__ = ("_at", "_keys", "_pos")

    def __init__(self) -> None:
        self._pos: dict[str, int] = {}
        self._keys: list[str] = []
        self._at: list[int] = []

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def keys_with_ttl(self) -> dict[str, int]:
        """A live read-only view for fast membership tests (do not modify)."""
        return self._pos

    def slots(self) -> tuple[dict[str, int], list[int]]:
        """Live read-only views (key -> slot, slot -> expiry) for the hot read path: one dict
        lookup and one index instead of a method call (do not modify; the objects never change)."""
        return self._pos, self._at

    def get(self, key: str) -> int | None:
        i = self._pos.get(key)
        return None if i is None else self._at[i]

    def set(self, key: str, at: int) -> None:
        i = self._pos.get(key)
        if i is None:
            self._pos[key] = len(self._keys)
            self._keys.append(key)
            self._at.append(at)
        else:
            self._at[i] = at

    def replace(self, key: str, at: int | None) -> int | None:
        """Set (``at``) or drop (None) the expiry of ``key``; return the one it had (hot path)."""
        i = self._pos.get(key)
        if i is None:
            if at is not None:
                self._pos[key] = len(self._keys)
                self._keys.append(key)
                self._at.append(at)
            return None
        old = self._at[i]
        if at is not None:
            self._at[i] = at
        else:
            self.discard(key)
        return old

    def discard(self, key: str) -> None:
        i = self._pos.pop(key, None)
        if i is None:
            return
        last_key = self._keys.pop()
        last_at = self._at.pop()
        if i < len(self._keys):
            # Fill the hole with the former last entry so the list stays dense for sampling.
            self._keys[i] = last_key
            self._at[i] = last_at
            self._pos[last_key] = i

    def clear(self) -> None:
        self._pos.clear()
        self._keys.clear()
        self._at.clear()

    def sample(self, n: int, rng: random.Random) -> list[tuple[str, int]]:
        """Up to ``n`` random (key, expiry) pairs, with repetition (cheap; fine for estimating)."""
        size = len(self._keys)
        if size == 0:
            return []
        if size <= n:
            return list(zip(self._keys, self._at, strict=True))
        keys, at, rand = self._keys, self._at, rng.randrange
        out = []
        for _ in range(n):
            i = rand(size)
            out.append((keys[i], at[i]))
        return out

    def snapshot(self) -> tuple[list[str], list[int]]:
        """Copies of the keys and their expiries: a fraction of :meth:`copy`'s time under a lock
        (0.7 ms vs 18 ms for 100k keys); build the dict from them outside it."""
        return self._keys.copy(), self._at.copy()

    def copy(self) -> dict[str, int]:
        """A plain dict snapshot (for rewrites, which run outside the lock)."""
        return dict(zip(self._keys, self._at, strict=True))

    def items(self) -> Iterator[tuple[str, int]]:
        return zip(self._keys, self._at, strict=True)


def check_key(key: object) -> None:
    if type(key) is not str:
        raise BadRequestError("key must be a string")
    if not key:
        raise BadRequestError("Key is required")


def checked_set(key: object, value: object, ttl: float | None, expires_at: int | None) -> int:
    """Check the arguments of ``set`` (store or batch); the absolute expiry in ms, 0 for none."""
    if type(key) is not str or not key:
        check_key(key)
    if type(value) is not str:
        raise BadRequestError("value must be a string")
    return 0 if ttl is None and expires_at is None else expiry_ms(ttl, expires_at)


def expiry_ms(ttl: float | None, expires_at: int | None) -> int:
    """Absolute expiry in epoch ms from exactly one of ttl (seconds) or expires_at (epoch ms)."""
    if ttl is not None:
        if expires_at is not None:
            raise BadRequestError("give ttl or expires_at, not both")
        if type(ttl) not in (int, float) or not math.isfinite(ttl) or ttl <= 0:
            raise BadRequestError(f"ttl must be a positive finite number of seconds, not {ttl!r}")
        ms = math.ceil(ttl * 1000)
        if ms > MAX_TTL_MS:
            raise BadRequestError("ttl is too large (at most 100 years)")
        return now_ms() + ms
    if type(expires_at) is not int or not 0 < expires_at <= MAX_EXPIRES_AT:
        raise BadRequestError(f"expires_at must be a positive integer epoch ms, not {expires_at!r}")
    return expires_at
