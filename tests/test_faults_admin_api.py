"""Fault suite: hostile input to the HTTP admin API. Invalid JSON, huge bodies, deep nesting,
NaN, 5000-digit numbers, wrong types, unknown paths and methods, with and without the token:
only 4xx answers with a JSON error, never a traceback in the node's log, membership unchanged."""

from __future__ import annotations

import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yakvs.testing.cluster import NodeProc, run_cluster

pytestmark = pytest.mark.timeout(120)

SECRET = "admin-fuzz-secret"

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
_fields = st.dictionaries(
    st.sampled_from(["id", "raft", "tcp", "api", "node_id", "secret"]),
    st.one_of(_json_values, st.sampled_from(
        ["n1", "127.0.0.1:1", "127.0.0.1:0", "127.0.0.1:99999", ":80", "[::1]:5", "a/b", ""])),
)
_bodies = st.one_of(
    _fields.map(lambda d: json.dumps(d).encode()),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    # Up to 30000 deep: past Python's recursion limit, within the 64 KiB body limit.
    st.integers(1, 30000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 30000).map(lambda n: b'{"id":' + b"[" * n),
    st.just(b'{"id": NaN, "raft": Infinity, "tcp": -Infinity, "api": 1e999}'),
    st.just(b'{"id": ' + b"1" * 5000 + b"}"),
    st.just(b'{"id": "n9", "raft": "127.0.0.1:' + b"9" * 5000 + b'"}'),
    st.just(b'{"id": "\xff\xfe"}'),
)
_targets = st.sampled_from([
    ("POST", "/join"), ("POST", "/leave"), ("DELETE", "/members/n1"), ("DELETE", "/members/%00"),
    ("DELETE", "/members/" + "x" * 5000), ("GET", "/members"), ("POST", "/snapshot"),
    ("PUT", "/join"), ("GET", "/../../etc/passwd"), ("POST", "/status"), ("GET", "/nope"),
])


def _call(node: NodeProc, method: str, path: str, body: bytes, token: str | None) -> tuple:
    host, _, port = node.api.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def test_hostile_admin_requests_get_4xx_and_change_nothing(tmp_path):
    with run_cluster(tmp_path, size=1, secret=SECRET) as cluster:
        node = cluster.nodes[0]
        before = node.http("GET", "/members")
        assert before[0] == 200
        seen: set[int] = set()

        @settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(_targets, _bodies, st.sampled_from([None, "", "wrong", SECRET]))
        def fuzz(target: tuple[str, str], body: bytes, token: str | None) -> None:
            method, path = target
            if (method, path) in {("POST", "/leave"), ("DELETE", "/members/n1")} and (
                token == SECRET
            ):
                token = "wrong"  # authorised, these are legitimate requests that do change things
            status, ctype, raw = _call(node, method, path, body, token)
            seen.add(status)
            if method == "GET" and path == "/members":
                assert status == 200
                return
            if (method, path) == ("POST", "/snapshot") and token == SECRET:
                assert status == 200  # a legitimate request: the body is ignored
                return
            assert 400 <= status < 500, (status, raw[:300])
            if path in {"/join", "/leave", "/snapshot"} or path.startswith("/members"):
                if status not in (404, 405, 413):  # aiohttp's own answers are plain text
                    assert "json" in ctype and "error" in json.loads(raw), raw[:300]

        fuzz()
        # The nastiest bodies once more, authorised, so they surely reach the JSON parser.
        for body in (b'{"id": NaN, "raft": Infinity}', b'{"id": ' + b"1" * 5000 + b"}",
                     b'{"id": "n9", "raft": "127.0.0.1:' + b"9" * 5000 + b'", "tcp": 5}',
                     b"\xff\xfe", b"null", b"[]", b'"x"', b"[" * 500 + b"]" * 500):
            status, _, raw = _call(node, "POST", "/join", body, SECRET)
            assert 400 <= status < 500 and "error" in json.loads(raw), (body[:40], status, raw)
        # A body over the 64 KiB limit, authorised.
        status, _, _ = _call(node, "POST", "/join", b"{" + b" " * 100_000 + b"}", SECRET)
        assert status == 413
        after = node.http("GET", "/members")
        assert node.alive and node.ready()
        log = node.log_path.read_text(errors="replace")
    assert after == before
    assert {401, 400} <= seen, seen
    assert "Traceback" not in log, log[-3000:]


def test_deeply_nested_body_is_a_4xx(tmp_path):
    with run_cluster(tmp_path, size=1, secret=SECRET) as cluster:
        node = cluster.nodes[0]
        # 60 KB: under the 64 KiB body limit, far over Python's recursion limit.
        status, _, raw = _call(node, "POST", "/join", b"[" * 30000 + b"]" * 30000, SECRET)
        log = node.log_path.read_text(errors="replace")
    assert 400 <= status < 500, (status, raw)
    assert "Traceback" not in log
