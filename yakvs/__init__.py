"""yakvs: Yet Another Key-Value Store -- durable, replicated, small."""

from __future__ import annotations

__version__ = "0.1.0"

from yakvs.client import AsyncClient, Client
from yakvs.errors import (
    BadRequestError,
    ConnectionFailedError,
    KeyNotFoundError,
    LogCorruptError,
    NoLeaderError,
    NotLeaderError,
    StorageError,
    TooLargeError,
    UnavailableError,
    UnknownOutcomeError,
    YakvsError,
)
from yakvs.store import Store, StoreConfig

__all__ = [
    "AsyncClient",
    "BadRequestError",
    "Client",
    "ConnectionFailedError",
    "KeyNotFoundError",
    "LogCorruptError",
    "NoLeaderError",
    "NotLeaderError",
    "StorageError",
    "Store",
    "StoreConfig",
    "TooLargeError",
    "UnavailableError",
    "UnknownOutcomeError",
    "YakvsError",
    "__version__",
]
