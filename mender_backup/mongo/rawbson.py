"""BSON documents as sequences of raw elements: read, edit and rebuild a document
without decoding its values, so every value we do not change keeps its exact bytes
(field order, int32 vs int64, dates outside Python's range, DBRefs...).

An element is (name, type byte, value bytes), as the BSON spec lays it out:
type | name (cstring) | value. Used by the oplog replay (updates, document keys).
"""

from __future__ import annotations

import struct
from typing import Iterator, NamedTuple

from ..errors import IntegrityError

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")

DOCUMENT, ARRAY, NULL, INT32, INT64 = 0x03, 0x04, 0x0A, 0x10, 0x12
# value sizes of the fixed-size types (bsonspec.org): double, undefined, ObjectId, bool,
# datetime, null, int32, timestamp, int64, decimal128, min key, max key
_FIXED = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
          0xFF: 0, 0x7F: 0}


class Element(NamedTuple):
    name: str
    type: int
    value: bytes

    def renamed(self, name: str) -> "Element":
        return Element(name, self.type, self.value)

    def as_int(self) -> int:
        if self.type == INT32:
            return _I32.unpack(self.value)[0]
        if self.type == INT64:
            return _I64.unpack(self.value)[0]
        if self.type == 0x01:
            return int(struct.unpack("<d", self.value)[0])
        raise BsonError(f"field {self.name!r} is not a number")


class BsonError(IntegrityError):
    """Bytes that are not a well-formed BSON document."""


def _cstring_end(raw: bytes, pos: int) -> int:
    end = raw.find(b"\x00", pos)
    if end < 0:
        raise BsonError("unterminated field name")
    return end


def _value_size(raw: bytes, t: int, pos: int) -> int:
    if t in _FIXED:
        return _FIXED[t]
    if t in (0x02, 0x0D, 0x0E):                # string, JavaScript, symbol: int32 length + bytes
        return 4 + _I32.unpack_from(raw, pos)[0]
    if t in (DOCUMENT, ARRAY, 0x0F):            # embedded document, array, code with scope
        return _I32.unpack_from(raw, pos)[0]
    if t == 0x05:                               # binary: int32 length, subtype, bytes
        return 5 + _I32.unpack_from(raw, pos)[0]
    if t == 0x0B:                               # regex: two cstrings
        end = _cstring_end(raw, _cstring_end(raw, pos) + 1)
        return end + 1 - pos
    if t == 0x0C:                               # DBPointer: string + ObjectId
        return 4 + _I32.unpack_from(raw, pos)[0] + 12
    raise BsonError(f"unknown BSON type 0x{t:02x}")


def elements(doc: bytes) -> Iterator[Element]:
    """The elements of one document (or array), in order."""
    if len(doc) < 5 or _I32.unpack_from(doc, 0)[0] != len(doc) or doc[-1] != 0:
        raise BsonError("bad document length")
    pos, end = 4, len(doc) - 1
    while pos < end:
        t = doc[pos]
        name_end = _cstring_end(doc, pos + 1)
        start = name_end + 1
        size = _value_size(doc, t, start)
        if size < 0 or start + size > end:
            raise BsonError("element runs past the end of its document")
        yield Element(doc[pos + 1:name_end].decode("utf-8", "surrogateescape"), t, doc[start:start + size])
        pos = start + size


def build(elems: list[Element] | Iterator[Element]) -> bytes:
    body = b"".join(bytes([e.type]) + e.name.encode("utf-8", "surrogateescape") + b"\x00" + e.value
                    for e in elems)
    return _I32.pack(len(body) + 5) + body + b"\x00"


def build_array(elems: list[Element]) -> bytes:
    return build(e.renamed(str(i)) for i, e in enumerate(elems))


def null(name: str) -> Element:
    return Element(name, NULL, b"")


def field(doc: bytes, name: str) -> Element | None:
    for e in elements(doc):
        if e.name == name:
            return e
    return None


def without(doc: bytes, *names: str) -> bytes:
    return build(e for e in elements(doc) if e.name not in names)


def only(doc: bytes, *names: str) -> bytes:
    return build(e for e in elements(doc) if e.name in names)
