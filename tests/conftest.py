"""Shared fixtures: a real server on 127.0.0.1 port 0 (see yakvs.testing.server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yakvs.testing.server import ServerHandle, Wire, run_server


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
