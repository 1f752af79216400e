"""Authenticated encryption of raft traffic, faster than pysyncobj's Fernet.

pysyncobj encrypts every message with Fernet (AES-CBC + HMAC + base64): measured here ~75 us to
encrypt and ~55 us to decrypt a small message, which halved cluster throughput with a secret set.
This AES-GCM encryptor has the same interface (``encrypt_at_time``, ``extract_timestamp``,
``decrypt``), so pysyncobj's transport uses it unchanged.

Nonces: each encryptor (one per process) draws a random 16-byte salt, derives its own subkey
``HMAC-SHA256(key, salt)`` and counts nonces from zero under it, so a nonce never repeats under
one key however long the cluster runs. A token is ``timestamp(8) | salt(16) | counter(8) |
ciphertext+tag``; the timestamp (pysyncobj's replay check) is authenticated as associated data.
Receivers keep the subkeys of tokens that authenticated, so a stranger cannot grow the cache.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_SALT = b"yakvs-raft-aead-v1"
_ITERATIONS = 100_000
_HEADER = struct.Struct(">Q16sQ")
_MAX_PEERS = 256


class InvalidToken(Exception):
    """A token that is malformed or does not authenticate under the cluster secret."""


class AeadEncryptor:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.pbkdf2_hmac("sha256", secret.encode(), _SALT, _ITERATIONS)
        self._salt = os.urandom(16)
        self._aead = AESGCM(self._subkey(self._salt))
        self._counter = itertools.count()
        self._peers: dict[bytes, AESGCM] = {}

    def _subkey(self, salt: bytes) -> bytes:
        return hmac.digest(self._key, salt, "sha256")

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        header = _HEADER.pack(current_time, self._salt, next(self._counter))
        nonce = header[20:]  # last 4 salt bytes + counter: unique under this subkey
        return header + self._aead.encrypt(nonce, data, header)

    def extract_timestamp(self, token: bytes) -> int:
        if len(token) < _HEADER.size + 16:
            raise InvalidToken("token too short")
        timestamp: int = _HEADER.unpack_from(token)[0]
        return timestamp

    def decrypt(self, token: bytes) -> bytes:
        if len(token) < _HEADER.size + 16:
            raise InvalidToken("token too short")
        header = token[: _HEADER.size]
        salt = header[8:24]
        aead = self._peers.get(salt)
        known = aead is not None
        if aead is None:
            aead = AESGCM(self._subkey(salt))
        try:
            plain = aead.decrypt(header[20:], token[_HEADER.size :], header)
        except Exception as exc:
            raise InvalidToken("token does not authenticate") from exc
        if not known:
            if len(self._peers) >= _MAX_PEERS:
                self._peers.clear()
            self._peers[salt] = aead
        return plain
