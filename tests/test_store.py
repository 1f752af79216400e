"""Store API: values, validation, TTL and expiry, active expiry cycle, keys, config."""

from __future__ import annotations

import math
import time

import pytest

from yakvs.errors import BadRequestError
from yakvs.store import MAX_EXPIRES_AT, Store, StoreConfig

ODD_VALUES = [
    "",
    " ",
    "a b  c",
    "line1\nline2\r\n",
    'quote " and \\ backslash',
    "nul\x00inside",
    "SET x y 0\nDELETE z",
    "unicode é ü 中文 😀 \u2028\u2029",
    "\x7f\x1b[31m",
    '{"op": "SET"}',
    "x" * 100_000,
]


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "kv.log"


def reopen(path, **kw) -> Store:
    return Store(path=path, background=False, **kw)


@pytest.mark.parametrize("value", ODD_VALUES)
def test_odd_values_round_trip_through_the_log(log_path, value):
    key = "k " + value[:50] + "\n"
    with reopen(log_path) as s:
        s.set(key, value)
        assert s.get(key) == (value, None)
    with reopen(log_path) as s:
        assert s.get(key) == (value, None)
        assert list(s.items()) == [(key, value, None)]


def test_basic_api_memory_only():
    with Store(background=False) as s:
        assert s.get("a") is None
        assert s.ttl("a") == -2
        assert not s.exists("a")
        s.set("a", "1")
        assert s.get("a") == ("1", None)
        assert s.ttl("a") == -1
        assert s.exists("a")
        assert len(s) == 1
        assert s.delete("a") is True
        assert s.delete("a") is False
        assert s.get("a") is None
        assert not s.expire("a", 10)
        assert not s.persist("a")


def test_set_without_ttl_never_expires_and_overwrite_clears_ttl(log_path):
    # The Go original expired keys set without a TTL at once.
    with reopen(log_path) as s:
        s.set("k", "v", ttl=100)
        assert 99_000 < s.ttl("k") <= 100_000
        s.set("k", "v2")
        assert s.ttl("k") == -1
        assert s.stats["expires"] == 0
    with reopen(log_path) as s:
        assert s.get("k") == ("v2", None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": "", "value": "v"},
        {"key": 1, "value": "v"},
        {"key": b"k", "value": "v"},
        {"key": None, "value": "v"},
        {"key": "k", "value": 1},
        {"key": "k", "value": b"v"},
        {"key": "k", "value": None},
        {"key": "k", "value": "v", "ttl": 0},
        {"key": "k", "value": "v", "ttl": -1},
        {"key": "k", "value": "v", "ttl": math.nan},
        {"key": "k", "value": "v", "ttl": math.inf},
        {"key": "k", "value": "v", "ttl": 1e12},
        {"key": "k", "value": "v", "ttl": True},
        {"key": "k", "value": "v", "ttl": "10"},
        {"key": "k", "value": "v", "expires_at": 1.5},
        {"key": "k", "value": "v", "expires_at": 0},
        {"key": "k", "value": "v", "expires_at": -5},
        {"key": "k", "value": "v", "expires_at": MAX_EXPIRES_AT + 1},
        {"key": "k", "value": "v", "ttl": 5, "expires_at": 2**40},
        {"key": "k\ud800", "value": "v"},
        {"key": "k", "value": "lone surrogate \udfff"},
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(log_path, kwargs):
    with reopen(log_path) as s:
        s.set("k", "before")
        size = s.stats["log_bytes"]
        with pytest.raises(BadRequestError):
            s.set(**kwargs)
        assert s.get("k") == ("before", None)
        assert list(s.items()) == [("k", "before", None)]
        assert s.stats["log_bytes"] == size
    with reopen(log_path) as s:
        assert list(s.items()) == [("k", "before", None)]


def test_bad_expire_arguments(log_path):
    with reopen(log_path) as s:
        s.set("k", "v")
        for bad in (0, -1, math.nan, math.inf):
            with pytest.raises(BadRequestError):
                s.expire("k", bad)
        with pytest.raises(BadRequestError):
            s.delete("")
        with pytest.raises(BadRequestError):
            s.keys(limit=-1)
        assert s.ttl("k") == -1


def test_ttl_expiry_is_immediate_and_not_resurrected_by_replay(log_path):
    with reopen(log_path) as s:
        s.set("short", "v", ttl=0.3)
        s.set("untouched", "v", ttl=0.3)  # expires without ever being read: no DELETE logged
        s.set("long", "v", ttl=1000)
        s.set("gone", "v", expires_at=1)  # in the past: invisible at once
        assert s.get("gone") is None
        got = s.get("short")
        assert got is not None and 0 < got[1] <= 300
        time.sleep(max(0.0, s.expires_at("untouched") / 1000 - time.time()) + 0.02)
        assert s.get("short") is None
        assert s.ttl("short") == -2
        assert not s.exists("short")
        assert s.keys() == ["long"]
    # Expired keys must not come back, whether or not a DELETE was logged for them.
    with reopen(log_path) as s:
        assert s.keys() == ["long"]
        assert len(s) == 1
        assert 990_000 < s.ttl("long") <= 1_000_000


def test_expired_records_are_dropped_at_replay_without_delete_records(log_path):
    with reopen(log_path, local_expiry=False) as s:
        s.set("a", "1", ttl=0.05)
        s.set("b", "2")
        s.expire("b", 0.05)
        s.set("c", "3")
        time.sleep(0.08)
        assert s.get("a") is None
        assert len(s) == 3  # hidden, but the store did not delete them on its own
    with reopen(log_path) as s:
        assert s.keys() == ["c"]
        assert len(s) == 1


def test_expire_persist_and_expires_at(log_path):
    with reopen(log_path) as s:
        s.set("k", "v")
        assert s.expire("k", 100)
        assert 99_000 < s.ttl("k") <= 100_000
        assert s.persist("k")
        assert not s.persist("k")
        assert s.ttl("k") == -1
        at = int(time.time() * 1000) + 3_600_000
        assert s.expire("k", expires_at=at)
        assert s.expires_at("k") == at
        assert s.expire("k")  # neither argument: clear
        assert s.expires_at("k") is None
        s.expire("k", expires_at=at)
    with reopen(log_path) as s:
        assert s.expires_at("k") == at
        assert s.expire("k", expires_at=1)
        assert s.get("k") is None
    with reopen(log_path) as s:
        assert s.get("k") is None


def test_active_cycle_reclaims_memory_incrementally():
    n = 60_000
    with Store(background=False) as s:
        at = int(time.time() * 1000) + 50
        for i in range(n):
            s.set(f"t{i}", "v", expires_at=at)
        for i in range(100):
            s.set(f"p{i}", "v")
        for i in range(100):
            s.set(f"l{i}", "v", ttl=1000)
        time.sleep(max(0.0, at / 1000 - time.time()) + 0.01)
        assert len(s) == n + 200  # nothing touched yet
        s.tick()
        # One tick makes progress but is bounded in time: never a scan of everything at once.
        assert 200 < len(s) < n + 200
        deadline = time.monotonic() + 20
        while len(s) > 200 and time.monotonic() < deadline:
            s.tick()
        assert len(s) == 200
        assert s.stats["expires"] == 100
        assert s.stats["expired_keys"] == n


def test_background_thread_reclaims_expired_keys(log_path):
    with Store(path=log_path, fsync="everysec") as s:
        for i in range(500):
            s.set(f"t{i}", "v", ttl=0.05)
        s.set("keep", "v")
        deadline = time.monotonic() + 5
        while len(s) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(s) == 1
        # everysec: the background thread fsynced what was written.
        deadline = time.monotonic() + 3
        while s.stats["log_synced_bytes"] < s.stats["log_bytes"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.stats["log_synced_bytes"] == s.stats["log_bytes"]
    with reopen(log_path) as s:
        assert s.keys() == ["keep"]


def test_keys_prefix_limit_sorted():
    with Store(background=False) as s:
        for k in ["b2", "a1", "b1", "c", "b3", "bx"]:
            s.set(k, "v")
        s.set("b0", "v", expires_at=1)
        assert s.keys() == ["a1", "b1", "b2", "b3", "bx", "c"]
        assert s.keys("b") == ["b1", "b2", "b3", "bx"]
        assert s.keys("b", limit=2) == ["b1", "b2"]
        assert s.keys("b", limit=0) == []
        assert s.keys("zz") == []


def test_config_object_and_kwargs(log_path):
    cfg = StoreConfig(path=log_path, fsync="always", background=False)
    with Store(cfg) as s:
        s.set("a", "1")
        st = s.stats
        assert st["fsync"] == "always"
        assert st["log_synced_bytes"] == st["log_bytes"] > 0
        assert st["keys"] == 1
    with pytest.raises(ValueError):
        Store(fsync="sometimes")
    with Store(cfg, fsync="no") as s:
        assert s.stats["fsync"] == "no"
