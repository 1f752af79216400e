"""yakvs clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio)."""

from __future__ import annotations

from yakvs.client._retry import Backoff, ExponentialBackoff, NoBackoff, Retry
from yakvs.client.aio import AsyncClient, AsyncPipeline
from yakvs.client.sync import Client, Pipeline

__all__ = [
    "AsyncClient",
    "AsyncPipeline",
    "Backoff",
    "Client",
    "ExponentialBackoff",
    "NoBackoff",
    "Pipeline",
    "Retry",
]
