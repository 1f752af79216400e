"""yakvs: Yet Another Key-Value Store -- durable, replicated, small."""

from __future__ import annotations

__version__ = "0.1.0"

from yakvs.errors import (
    BadRequestError,
    ConnectionFailedError,
    KeyNotFoundError,
    NoLeaderError,
    NotLeaderError,
    StorageError,
    TooLargeError,
    UnavailableError,
    UnknownOutcomeError,
    YakvsError,
)

__all__ = [
    "BadRequestError",
    "ConnectionFailedError",
    "KeyNotFoundError",
    "NoLeaderError",
    "NotLeaderError",
    "StorageError",
    "TooLargeError",
    "UnavailableError",
    "UnknownOutcomeError",
    "YakvsError",
    "__version__",
]
