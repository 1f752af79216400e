"""The command log: replay property, torn tails, corruption, foreign files, repair, compaction."""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from yakvs._log import MAGIC
from yakvs.errors import LogCorruptError, StorageError
from yakvs.store import Store


def reopen(path, **kw) -> Store:
    return Store(path=path, background=False, **kw)


def state(s: Store) -> list[tuple[str, str, int | None]]:
    return sorted(s.items())


# -- replay property --------------------------------------------------------------------------

FAR = int(time.time() * 1000) + 86_400_000
keys_st = st.sampled_from(["a", "d e\nf", "é😀\x00"])
exp_st = st.one_of(
    st.none(),
    st.integers(FAR, FAR + 10**6),
    st.integers(1, 10**9),  # far future, or past
)
ops_st = st.lists(
    st.tuples(
        st.sampled_from(["set", "set", "delete", "expire", "persist", "compact"]),
        keys_st,
        st.text(max_size=20),
        exp_st,
    ),
    min_size=4,
    max_size=30,
)


def apply(s: Store, op: tuple) -> None:
    if op[0] == "set":
        s.set(op[1], op[2], expires_at=op[3])
    elif op[0] == "delete":
        s.delete(op[1])
    elif op[0] == "expire":
        s.expire(op[1], expires_at=op[3])
    elif op[0] == "persist":
        s.persist(op[1])
    else:
        s.compact()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_st, compact_at_end=st.booleans())
# Every record kind acting on a key with an expiry, always tried besides the random draws.
@example(ops=[("set", "a", "v", FAR), ("persist", "a", "", None)], compact_at_end=False)
@example(ops=[("set", "a", "v", FAR), ("expire", "a", "", None)], compact_at_end=False)
@example(ops=[("set", "a", "v", FAR), ("expire", "a", "", 5)], compact_at_end=False)
@example(ops=[("set", "a", "v", None), ("expire", "a", "", FAR + 1)], compact_at_end=False)
@example(ops=[("set", "a", "v", FAR), ("set", "a", "w", None)], compact_at_end=False)
@example(ops=[("set", "a", "v", FAR), ("delete", "a", "", None)], compact_at_end=False)
@example(ops=[("set", "a", "v", None), ("set", "a", "w", 5)], compact_at_end=True)
def test_replay_gives_the_same_state(ops, compact_at_end):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "kv.log"
        with reopen(path, fsync="no") as s:
            for op in ops:
                apply(s, op)
            if compact_at_end:
                s.compact()
            before = state(s)
        with reopen(path) as s:
            assert state(s) == before
            # ... and a second generation of writes on the replayed log replays too.
            s.set("z", "after")
            before = state(s)
        with reopen(path) as s:
            assert state(s) == before


# -- torn tails, corruption, foreign files ----------------------------------------------------


def build_log(path: Path, n: int = 60) -> list[tuple[int, list]]:
    """Write n varied records; return [(file size after record i, state after record i)]."""
    history = [(len(MAGIC), [])]
    with reopen(path, fsync="no") as s:
        for i in range(n):
            if i % 7 == 3:
                s.delete(f"k{i - 2}")
            elif i % 11 == 5:
                s.expire(f"k{i - 1}", expires_at=FAR + i)
            else:
                s.set(f"k{i}", f"value {i}\n" * (i % 4), expires_at=FAR if i % 5 == 0 else None)
            history.append((s.stats["log_bytes"], state(s)))
    return history


def test_torn_tail_at_20_random_cut_points(tmp_path, caplog):
    path = tmp_path / "kv.log"
    history = build_log(path)
    full = path.read_bytes()
    rng = random.Random(1234)
    cuts = rng.sample(range(len(MAGIC), len(full)), 20)
    for cut in cuts:
        path.write_bytes(full[:cut])
        size, expected = max(h for h in history if h[0] <= cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="yakvs"):
            with reopen(path) as s:
                assert state(s) == expected
                assert s.stats["torn_bytes_cut"] == cut - size
                s.set("new", "record")  # appends cleanly after the cut
        assert (cut == size) == (not any("torn" in r.message for r in caplog.records))
        with reopen(path) as s:
            assert state(s) == sorted([*expected, ("new", "record", None)])


def test_flipped_byte_mid_file_refuses_and_names_offset(tmp_path):
    path = tmp_path / "kv.log"
    history = build_log(path)
    start = history[20][0]  # record 21 starts here
    data = bytearray(path.read_bytes())
    data[start + 15] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError) as err:
        reopen(path)
    assert err.value.offset == start
    assert f"offset {start}" in str(err.value)
    assert path.read_bytes() == bytes(data)  # refused means untouched


def test_repair_keeps_good_prefix_and_moves_the_rest_aside(tmp_path, caplog):
    path = tmp_path / "kv.log"
    history = build_log(path)
    start = history[30][0]
    data = bytearray(path.read_bytes())
    data[start + 3] = ord("z")  # breaks the checksum field
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="yakvs"):
        with reopen(path, repair=True) as s:
            assert state(s) == history[30][1]
            assert s.stats["repaired_suffix_file"] is not None
            s.set("after", "repair")
    assert any("repaired" in r.message for r in caplog.records)
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_bytes() == bytes(data[start:])  # nothing lost silently
    with reopen(path) as s:
        assert state(s) == sorted([*history[30][1], ("after", "repair", None)])


def test_bad_last_record_is_cut_as_torn(tmp_path):
    path = tmp_path / "kv.log"
    history = build_log(path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x20
    path.write_bytes(bytes(data))
    with reopen(path) as s:
        assert state(s) == history[-2][1]


@pytest.mark.parametrize(
    ("garbage", "refused"),
    [
        (b"\x00" * 4096, False),  # zero-filled tail after a power loss
        (b"SET k v", False),  # partial line
        (b"garbage\n", False),  # one bad final line: indistinguishable from a torn record
        (b"garbage\nmore garbage\n", True),
        (b"00000000 []\n" * 3, True),
    ],
)
def test_trailing_garbage(tmp_path, garbage, refused):
    path = tmp_path / "kv.log"
    history = build_log(path, n=10)
    path.write_bytes(path.read_bytes() + garbage)
    if refused:
        with pytest.raises(LogCorruptError) as err:
            reopen(path)
        assert err.value.offset == history[-1][0]
    else:
        with reopen(path) as s:
            assert state(s) == history[-1][1]
        assert path.stat().st_size == history[-1][0]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"SET key value 0\nSET other thing 0\n", "not a yakvs command log"),  # Go original
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a yakvs command log"),
        (b"YAKVS-LOG 2\n", "version"),
        (b"yakvs-log 1\n", "not a yakvs command log"),
    ],
)
def test_foreign_file_is_refused_untouched(tmp_path, content, match):
    path = tmp_path / "kv.log"
    path.write_bytes(content)
    with pytest.raises(LogCorruptError, match=match):
        reopen(path)
    with pytest.raises(LogCorruptError):
        reopen(path, repair=True)  # repair never "fixes" someone else's file
    assert path.read_bytes() == content


@pytest.mark.parametrize("content", [b"", MAGIC[:5]])
def test_empty_or_torn_header_starts_a_new_log(tmp_path, content):
    path = tmp_path / "kv.log"
    path.write_bytes(content)
    with reopen(path) as s:
        s.set("a", "1")
    with reopen(path) as s:
        assert state(s) == [("a", "1", None)]


def test_log_corrupt_error_has_a_wire_code():
    from yakvs.errors import error_from_code

    err = error_from_code("LOG_CORRUPT", "bad")
    assert isinstance(err, LogCorruptError)
    assert err.code == "LOG_CORRUPT"
    assert err.offset is None


def test_unwritable_log_location_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError):
        reopen(tmp_path / "missing-dir" / "kv.log")


# -- compaction -------------------------------------------------------------------------------


def test_compaction_shrinks_and_drops_expired_records(tmp_path):
    path = tmp_path / "kv.log"
    with reopen(path, fsync="always") as s:
        for i in range(300):
            s.set("same", f"v{i}")
        s.set("short", "secret-short", ttl=0.05)
        s.set("gone", "secret-gone")
        s.delete("gone")
        time.sleep(0.08)
        before = s.stats["log_bytes"]
        s.compact()
        assert s.stats["log_bytes"] < before / 50
        assert s.stats["rewrites"] == 1
        s.set("x", "after compaction")
        expected = state(s)
    raw = path.read_bytes()
    assert b"secret" not in raw
    assert not (tmp_path / "kv.log.rewrite").exists()
    with reopen(path) as s:
        assert state(s) == expected


def test_auto_compaction_in_background(tmp_path):
    path = tmp_path / "kv.log"
    with Store(path=path, fsync="no", compact_min_size=20_000, compact_growth=2.0) as s:
        for i in range(3000):
            s.set(f"k{i % 50}", "v" * 20)
        deadline = time.monotonic() + 10
        while s.stats["rewrites"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.stats["rewrites"] >= 1
        expected = state(s)
    assert path.stat().st_size < 20_000
    with reopen(path) as s:
        assert state(s) == expected


def test_failed_rewrite_leaves_old_log_untouched(tmp_path):
    path = tmp_path / "kv.log"
    with reopen(path) as s:
        for i in range(100):
            s.set(f"k{i}", "v")
        (tmp_path / "kv.log.rewrite").mkdir()  # the rewrite cannot create its file
        raw = path.read_bytes()
        with pytest.raises(StorageError, match="rewrite"):
            s.compact()
        assert path.read_bytes() == raw
        s.set("after", "failure")  # writes go on to the old log
        expected = state(s)
        (tmp_path / "kv.log.rewrite").rmdir()
        s.compact()  # and a later rewrite works
        s.set("after", "success")
        expected = [e if e[0] != "after" else ("after", "success", None) for e in expected]
    with reopen(path) as s:
        assert state(s) == expected
    assert sorted(os.listdir(tmp_path)) == ["kv.log"]


def test_documented_example_log_replays(tmp_path):
    doc = (Path(__file__).parent.parent / "docs" / "log-format.md").read_text()
    block = doc.split("```\n", 2)[1]
    lines = [line.split("  ")[0].strip() for line in block.splitlines()]
    path = tmp_path / "kv.log"
    path.write_bytes("".join(line.replace("\\n", "\n") for line in lines).encode())
    with reopen(path) as s:
        assert s.keys() == ["user:1"]  # session:9 expired long ago, then was deleted
        assert s.get("user:1")[0] == "Ada Lovelace"
        assert s.expires_at("user:1") == 4102444800000  # 2100-01-01


@pytest.mark.parametrize(
    "payload",
    [
        b'["S","k"]',  # wrong number of fields
        b'["S","k","v",0,1]',
        b'["X","k",null,0]',  # unknown type
        b'["S","","v",0]',  # empty key
        b'["S",7,"v",0]',
        b'["S","k",1,0]',
        b'["S","k","v",-5]',
        b'["S","k","v","0"]',
        b'["D","k","v",0]',
        b'["E","k",null,1.5]',
        b'{"op":"SET"}',
        b"[]",
        b"null",
    ],
)
def test_well_checksummed_record_of_the_wrong_shape_is_corruption(tmp_path, payload):
    # A valid checksum does not make a record valid; the fast batch path must name it too.
    path = tmp_path / "kv.log"
    history = build_log(path, n=10)
    raw = path.read_bytes()
    cut = history[5][0]
    bad = b"%08x %b\n" % (zlib.crc32(payload), payload)
    path.write_bytes(raw[:cut] + bad + raw[cut:])
    with pytest.raises(LogCorruptError) as err:
        reopen(path)
    assert err.value.offset == cut
    with reopen(path, repair=True) as s:
        assert state(s) == history[5][1]


def test_values_larger_than_the_read_chunk(tmp_path):
    path = tmp_path / "kv.log"
    big = "b\n" * 1_500_000  # 3 MB of value, 6 MB once escaped: spans several 1 MiB reads
    with reopen(path) as s:
        s.set("small", "1")
        s.set("big", big)
        s.set("after", "2")
    with reopen(path) as s:
        assert s.get("big") == (big, None)
        assert s.keys() == ["after", "big", "small"]
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b'"after"') - 3])  # tear the record after the big one
    with reopen(path) as s:
        assert s.keys() == ["big", "small"]
