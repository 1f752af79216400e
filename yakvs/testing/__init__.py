"""Helpers for tests (ours and yakvs users'): real servers on ephemeral ports, no mocks."""

from __future__ import annotations
