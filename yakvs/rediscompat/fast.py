"""The hot path of RESP on a standalone store: batches of plain GET and SET, straight to the store.

redis-benchmark and most caches send nothing else. Such a batch skips planning, Request and Reply
objects: one store batch (one lock, one log write) and reply bytes built directly. Anything else,
or a backend that must wait for fsync (``--fsync always``) or Raft, takes the general path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from yakvs.errors import StorageError, YakvsError
from yakvs.rediscompat.replies import NIL, NULL3, OK, error

if TYPE_CHECKING:
    from yakvs.store import Store

_GET: Final = frozenset({b"GET", b"get", b"Get"})
_SET: Final = frozenset({b"SET", b"set", b"Set"})
# "$0".."$4095": the length header of a bulk string, looked up instead of formatted.
_NBULK: Final = 4096
_BULK: Final = [b"$%d" % n for n in range(_NBULK)]


def store_for(backend: Any) -> Store | None:
    """The store a RESP connection may use directly: a LocalBackend's, without group commit."""
    from yakvs.local import LocalBackend

    if isinstance(backend, LocalBackend) and not backend.group_commit:
        return backend.store
    return None


def split_one(data: bytes, max_bulk: int) -> list[list[bytes]] | None:
    """``[argv]`` when ``data`` is exactly one ``GET key`` or ``SET key value`` array, else None.

    An unpipelined client sends one command per read; :func:`split_arrays` would find it too,
    at about three times the cost. The same rule holds: each ``$n`` must equal the length of the
    piece after it, so a bulk holding a CRLF (or anything unusual) goes to the general parser.
    """
    parts = data.split(b"\r\n")
    count = len(parts)
    if count == 6:
        if parts[0] != b"*2" or parts[1] != b"$3" or parts[2] not in _GET or parts[5]:
            return None
        key = parts[4]
        n = len(key)
        if not key or n > max_bulk or parts[3] != (_BULK[n] if n < _NBULK else b"$%d" % n):
            return None
        return [[parts[2], key]]
    if count == 8:
        if parts[0] != b"*3" or parts[1] != b"$3" or parts[2] not in _SET or parts[7]:
            return None
        key, value = parts[4], parts[6]
        n, m = len(key), len(value)
        if (
            not key
            or n > max_bulk
            or m > max_bulk
            or parts[3] != (_BULK[n] if n < _NBULK else b"$%d" % n)
            or parts[5] != (_BULK[m] if m < _NBULK else b"$%d" % m)
        ):
            return None
        return [[parts[2], key, value]]
    return None


def split_arrays(data: bytes, max_bulk: int, max_count: int) -> list[list[bytes]] | None:
    """Whole RESP arrays of bulk strings, when ``data`` is exactly that and nothing unusual.

    One C-level split on CRLF instead of the general parser (about 10x less work for pipelined
    commands). Each ``$n`` must equal the length of the piece after it; if a bulk held a CRLF,
    the pieces would not match and None sends the bytes to the general parser, as it does for
    anything else it might judge differently (partial data, odd counts, limits, inline).
    """
    parts = data.split(b"\r\n")
    if parts.pop() != b"":
        return None
    n = len(parts)
    head = parts[0]
    if len(head) == 2 and 0x31 <= head[1] <= 0x39:  # "*1".."*9": try "all commands alike"
        c = head[1] - 0x30
        stride = 2 * c + 1
        if n % stride == 0 and c <= max_count and parts[::stride].count(head) == n // stride:
            for k in range(1, stride, 2):
                args = parts[k + 1 :: stride]
                if parts[k::stride] != [b"$%d" % len(a) for a in args] or (
                    max(map(len, args)) > max_bulk
                ):
                    return None
            return [parts[j + 2 : j + stride : 2] for j in range(0, n, stride)]
    i = 0
    out: list[list[bytes]] = []
    while i < n:
        head = parts[i]
        count = head[1:]
        if head[:1] != b"*" or not count.isdigit() or len(count) > 6 or count[0] == 0x30:
            return None
        c = int(count)
        end = i + 1 + 2 * c
        if end > n or c > max_count:
            return None
        argv = parts[i + 2 : end : 2]
        for size, arg in zip(parts[i + 1 : end : 2], argv, strict=True):
            if size[:1] != b"$" or size[1:] != b"%d" % len(arg) or len(arg) > max_bulk:
                return None
        out.append(argv)
        i = end
    return out


def plain(commands: list[list[bytes]]) -> bool:
    """Whether every command is ``GET key`` or ``SET key value`` with a non-empty key."""
    for argv in commands:
        n = len(argv)
        if not (
            (n == 2 and argv[0] in _GET) or (n == 3 and argv[0] in _SET)
        ) or not argv[1]:
            return False
    return True


def all_gets(commands: list[list[bytes]]) -> bool:
    """Whether a :func:`plain` batch only reads: it is answered at once, not at the turn's end."""
    for argv in commands:
        if len(argv) != 2:
            return False
    return True


def run(store: Store, commands: list[list[bytes]], nil: bytes = NIL) -> bytes:
    """Execute plain GET/SET commands in order; the RESP replies, joined (a miss is ``nil``)."""
    if len(commands) == 1:
        return run_on(store, commands, nil)
    try:
        with store.batch() as batch:
            return run_on(batch, commands, nil)
    except StorageError:
        # The batch's log write failed and was undone: one by one, each gets its own outcome.
        return run_on(store, commands, nil)


def set_one(target: Any, argv: list[bytes]) -> bytes:
    """One plain ``SET key value`` against ``target``: a write turn's runner for one client."""
    try:
        target.put(
            argv[1].decode("utf-8", "surrogateescape"),
            argv[2].decode("utf-8", "surrogateescape"),
            None,
        )
    except YakvsError as exc:
        return error(f"ERR {exc.message} ({exc.code})")
    return OK


def runner(nil: bytes) -> Callable[[Any, list[list[bytes]]], bytes]:
    """:func:`run_on` as a write turn calls it, ``(target, commands)``; a miss answers ``nil``."""
    return run_on if nil == NIL else _RUN_ON_RESP3


def run_on(target: Any, commands: list[list[bytes]], nil: bytes = NIL) -> bytes:
    """Execute plain GET/SET commands against ``target`` (a store batch, or the store)."""
    out: list[bytes] = []
    append = out.append
    for argv in commands:
        key = argv[1].decode("utf-8", "surrogateescape")
        try:
            if len(argv) == 2:
                found = target.get(key)
                if found is None:
                    append(nil)
                else:
                    data = found[0].encode("utf-8", "surrogateescape")
                    append(b"$%d\r\n%b\r\n" % (len(data), data))
            else:  # plain() checked the key is not empty; put() is binary-safe
                target.put(key, argv[2].decode("utf-8", "surrogateescape"), None)
                append(OK)
        except YakvsError as exc:
            append(error(f"ERR {exc.message} ({exc.code})"))
    return b"".join(out)


_RUN_ON_RESP3 = partial(run_on, nil=NULL3)
