"""Digests: the order-independent content digest of a collection, and the
sha256 of a byte stream (the archive's, in the manifest).

Collection digest: each document's raw BSON is hashed (SHA-256, first 128 bits)
and the hashes are added modulo 2**128. Equal multisets of documents give equal
digests whatever order the server returns them in; any changed, missing or
extra document changes it (unlike XOR, a duplicate does too).
"""

from __future__ import annotations

import hashlib
import io
import struct
from typing import BinaryIO

_MOD = 1 << 128
_LEN = struct.Struct("<i")


class CollectionDigest:
    __slots__ = ("count", "size", "_acc")

    def __init__(self) -> None:
        self.count = 0
        self.size = 0
        self._acc = 0

    def update(self, batch: bytes | memoryview) -> int:
        """Add concatenated raw BSON documents; returns how many there were."""
        view = memoryview(batch)
        sha, unpack, frombytes = hashlib.sha256, _LEN.unpack_from, int.from_bytes
        pos, end, n, acc = 0, len(view), 0, self._acc
        while pos < end:
            (length,) = unpack(view, pos)
            if length < 5 or pos + length > end:
                raise ValueError(f"invalid BSON length {length} in batch")
            acc += frombytes(sha(view[pos:pos + length]).digest()[:16], "little")
            pos += length
            n += 1
        self._acc = acc % _MOD
        self.count += n
        self.size += end
        return n

    def hexdigest(self) -> str:
        return f"{self._acc:032x}"


class HashingWriter(io.RawIOBase):
    """Passes bytes on to `out`, counting and hashing them on the way."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._out.write(b)
        self.sha.update(b)
        self.size += len(b)
        return len(b)

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


class HashingReader(io.RawIOBase):
    """Reads from `inp`, counting and hashing what passes: one read of an
    archive both checks its sha256 and feeds the restore."""

    def __init__(self, inp: BinaryIO):
        self._in = inp
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._in.read(len(b))
        if not data:
            return 0
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.size += n
        return n

    def drain(self, chunk: int = 1 << 20) -> None:
        """Read to the end (so the digest covers the whole stream)."""
        while self.read(chunk):
            pass

    def hexdigest(self) -> str:
        return self.sha.hexdigest()
