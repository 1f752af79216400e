"""Shared fixtures: a real server on 127.0.0.1 port 0 (see yakvs.testing.server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import yakvs
from yakvs.testing.redis import REDIS_SERVER, run_redis
from yakvs.testing.server import ServerHandle, Wire, run_server

# Server and cluster processes the tests spawn must run the code under test, not whatever yakvs
# is installed (an editable install may point at another checkout or worktree).
_ROOT = str(Path(yakvs.__file__).resolve().parent.parent)
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != _ROOT:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))


@pytest.fixture
def server(tmp_path) -> Iterator[ServerHandle]:
    with run_server(tmp_path) as handle:
        yield handle


@pytest.fixture
def wire(server) -> Iterator[Wire]:
    w = Wire(server.addr)
    yield w
    w.close()


@pytest.fixture
def wire_factory(server):
    made: list[Wire] = []

    def make() -> Wire:
        w = Wire(server.addr)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture(scope="module")
def yakvs_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One standalone server per test module, for the Redis-protocol comparisons."""
    with run_server(tmp_path_factory.mktemp("yakvs")) as handle:
        yield handle.host, handle.port


@pytest.fixture(scope="module")
def redis_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int] | None]:
    """A real redis-server 7 per test module, or None where it is not installed."""
    if REDIS_SERVER is None:
        yield None
        return
    with run_redis(tmp_path_factory.mktemp("redis")) as addr:
        yield addr
