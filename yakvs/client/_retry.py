"""Retry and backoff as small objects, as in redis-py: the clients ask them how long to wait."""

from __future__ import annotations

import abc
import random


class Backoff(abc.ABC):
    """How long to wait before retry number ``failures`` (1 = the first retry)."""

    @abc.abstractmethod
    def compute(self, failures: int) -> float:
        """Seconds to sleep."""


class NoBackoff(Backoff):
    def compute(self, failures: int) -> float:
        return 0.0


class ExponentialBackoff(Backoff):
    """``base * 2**(failures-1)`` capped at ``cap``, with "equal jitter": half fixed, half random,
    so a crowd of clients that lost the same server does not come back in lockstep."""

    def __init__(
        self, base: float = 0.05, cap: float = 2.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def compute(self, failures: int) -> float:
        ceiling: float = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


class Retry:
    """``retries`` more attempts after the first, sleeping ``backoff.compute(n)`` before each."""

    def __init__(self, retries: int = 3, backoff: Backoff | None = None) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.retries = retries
        self.backoff = backoff if backoff is not None else ExponentialBackoff()

    def delay(self, failures: int) -> float | None:
        """Seconds to wait before attempt ``failures + 1``, or None when out of retries."""
        if failures > self.retries:
            return None
        return self.backoff.compute(failures)
