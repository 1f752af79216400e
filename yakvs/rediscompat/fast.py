"""The hot path of RESP on a standalone store: batches of plain GET and SET, straight to the store.

redis-benchmark and most caches send nothing else. Such a batch skips planning, Request and Reply
objects: one store batch (one lock, one log write) and reply bytes built directly. Anything else,
or a backend that must wait for fsync (``--fsync always``) or Raft, takes the general path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from yakvs.errors import StorageError, YakvsError
from yakvs.rediscompat.replies import NIL, OK, error

if TYPE_CHECKING:
    from yakvs.store import Store

_GET: Final = frozenset({b"GET", b"get", b"Get"})
_SET: Final = frozenset({b"SET", b"set", b"Set"})


def store_for(backend: Any) -> Store | None:
    """The store a RESP connection may use directly: a LocalBackend's, without group commit."""
    from yakvs.local import LocalBackend

    if isinstance(backend, LocalBackend) and not backend.group_commit:
        return backend.store
    return None


def plain(commands: list[list[bytes]]) -> bool:
    """Whether every command is ``GET key`` or ``SET key value`` with a non-empty key."""
    for argv in commands:
        n = len(argv)
        if not (
            (n == 2 and argv[0] in _GET) or (n == 3 and argv[0] in _SET)
        ) or not argv[1]:
            return False
    return True


def run(store: Store, commands: list[list[bytes]]) -> bytes:
    """Execute plain GET/SET commands in order; the RESP replies, joined."""
    if len(commands) == 1:
        return _run(store, commands)
    try:
        with store.batch() as batch:
            return _run(batch, commands)
    except StorageError:
        # The batch's log write failed and was undone: one by one, each gets its own outcome.
        return _run(store, commands)


def _run(target: Any, commands: list[list[bytes]]) -> bytes:
    out: list[bytes] = []
    append = out.append
    for argv in commands:
        key = argv[1].decode("utf-8", "surrogateescape")
        try:
            if len(argv) == 2:
                found = target.get(key)
                if found is None:
                    append(NIL)
                else:
                    data = found[0].encode("utf-8", "surrogateescape")
                    append(b"$%d\r\n%b\r\n" % (len(data), data))
            else:
                target.set(key, argv[2].decode("utf-8", "surrogateescape"))
                append(OK)
        except YakvsError as exc:
            append(error(f"ERR {exc.message} ({exc.code})"))
    return b"".join(out)
