"""An order-independent digest of a collection's documents.

Each document's raw BSON is hashed (SHA-256, first 128 bits) and the hashes are
added modulo 2**128. Equal multisets of documents give equal digests whatever
order the server returns them in; any changed, missing or extra document
changes it.
"""

from __future__ import annotations

import hashlib
import struct

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
