"""The yakvs error tree.

Every error that crosses the wire carries a machine ``code``; :data:`ERRORS_BY_CODE` is the one
table that maps a code back to its exception class, so clients raise typed errors and nobody
matches on message text.
"""

from __future__ import annotations

from typing import ClassVar


class YakvsError(Exception):
    """Base class of every error yakvs raises on purpose."""

    code: ClassVar[str] = "ERROR"
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)


class BadRequestError(YakvsError):
    """The request is malformed or its arguments are invalid (empty key, bad TTL, ...)."""

    code = "BAD_REQUEST"
    default_message = "Invalid command format"


class UnknownCommandError(BadRequestError):
    """The op is not one the server knows."""

    code = "UNKNOWN_COMMAND"
    default_message = "Unknown command"


class KeyNotFoundError(YakvsError):
    """The key does not exist, or has expired."""

    code = "NOT_FOUND"
    default_message = "Key not found"


class TooLargeError(BadRequestError):
    """The request line exceeds the server's maximum request size."""

    code = "TOO_LARGE"
    default_message = "Request too large"


class UnavailableError(YakvsError):
    """The server cannot serve the request right now; trying again later may succeed."""

    code = "UNAVAILABLE"
    default_message = "Service unavailable"


class StorageError(UnavailableError):
    """Writing the command log failed (disk full, I/O error); the write was not applied."""

    code = "IO_ERROR"
    default_message = "Write to the command log failed"


class LogCorruptError(YakvsError):
    """The command log is not ours, or is corrupt before its tail; ``offset`` names the byte."""

    code = "LOG_CORRUPT"
    default_message = "The command log is corrupt or is not a yakvs command log"

    def __init__(self, message: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class NoLeaderError(UnavailableError):
    """The cluster has no leader at the moment (election running, or quorum lost)."""

    code = "NO_LEADER"
    default_message = "No leader"


class NotLeaderError(UnavailableError):
    """This node is not the leader; ``leader`` is the leader's *client* address, if known."""

    code = "NOT_LEADER"
    default_message = "Not the leader"

    def __init__(self, message: str | None = None, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class UnknownOutcomeError(YakvsError):
    """A write may or may not have been applied (timeout during a leader change, lost link).

    Never treat this as success or as a clean failure: read the key back to find out.
    """

    code = "UNKNOWN_OUTCOME"
    default_message = "Outcome unknown: the write may or may not have been applied"


class ConnectionFailedError(YakvsError):
    """The client could not reach any server (never sent on the wire)."""

    code = "CONNECTION_FAILED"
    default_message = "Cannot connect to server"


class ClientTimeoutError(ConnectionFailedError):
    """A request got no reply within the client's request timeout (never sent on the wire)."""

    code = "TIMEOUT"
    default_message = "Request timed out"


ERRORS_BY_CODE: dict[str, type[YakvsError]] = {
    cls.code: cls
    for cls in (
        YakvsError,
        BadRequestError,
        UnknownCommandError,
        KeyNotFoundError,
        TooLargeError,
        UnavailableError,
        StorageError,
        LogCorruptError,
        NoLeaderError,
        NotLeaderError,
        UnknownOutcomeError,
        ConnectionFailedError,
        ClientTimeoutError,
    )
}


def error_from_code(
    code: str | None, message: str | None = None, **extra: str | None
) -> YakvsError:
    """Build the exception a reply's ``code`` stands for; unknown codes give a plain YakvsError."""
    cls = ERRORS_BY_CODE.get(code or "", YakvsError)
    if cls is NotLeaderError:
        return NotLeaderError(message, leader=extra.get("leader"))
    return cls(message)
