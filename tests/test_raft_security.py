"""The raft port unpickles what it receives: a secret must stop a stranger's pickle, and the admin
API's mutating calls need the bearer token."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
import zlib

import pytest

from yakvs.testing.cluster import run_cluster

pytestmark = pytest.mark.timeout(120)


class _Payload:
    """Unpickling this creates a directory: harmless proof that code ran in the node."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def send_pickle(raft: str, marker: str) -> None:
    """Frame a pickle exactly as pysyncobj's transport reads one: length, zlib(pickle)."""
    data = zlib.compress(pickle.dumps(_Payload(marker)))
    host, port = raft.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(struct.pack("i", len(data)) + data)
        time.sleep(0.5)


def wait_for(path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


def test_pickle_payload_needs_the_secret(tmp_path):
    # Control: on a loopback node without a secret the payload runs, so the framing is right
    # and the secured case below is a real test.
    open_marker = tmp_path / "ran-without-secret"
    with run_cluster(tmp_path / "open", size=1) as cluster:
        send_pickle(cluster.nodes[0].raft, str(open_marker))
        assert wait_for(open_marker, 5)

    secured_marker = tmp_path / "ran-with-secret"
    with run_cluster(tmp_path / "secured", size=1, secret="s3cret") as cluster:
        node = cluster.nodes[0]
        send_pickle(node.raft, str(secured_marker))
        assert not wait_for(secured_marker, 1.5)
        assert node.alive and node.ready()
        assert node.request({"op": "SET", "key": "k", "value": "v"})[0]["status"] == "success"


def test_admin_api_needs_the_token(tmp_path):
    with run_cluster(tmp_path, size=1, secret="s3cret") as cluster:
        node = cluster.nodes[0]
        body = {"id": "n9", "raft": "127.0.0.1:1", "tcp": "127.0.0.1:2", "api": "127.0.0.1:3"}
        for token in ("", "wrong"):
            code, reply = node.http("POST", "/join", body, token=token)
            assert code == 401, reply
            assert node.http("DELETE", "/members/n1", token=token)[0] == 401
            assert node.http("POST", "/snapshot", token=token)[0] == 401
        # Reads stay open; with the token the same bogus join gets past auth and is refused.
        assert node.http("GET", "/members", token="")[0] == 200
        assert node.http("GET", "/metrics", token="")[0] == 200
        code, reply = node.http("POST", "/join", body)
        assert code == 422, reply
        assert node.http("POST", "/snapshot")[0] == 200
