"""The mongodump `--archive` format, streaming, in both directions.

Layout (mongo-tools common/archive/spec.md):
    magic 0x8199e26d (LE) | header doc | collection-metadata docs | 0xffffffff |
    ( namespace-header doc, documents..., 0xffffffff
    | eof-header doc {EOF: true, CRC: crc64-ecma of the namespace's documents}, 0xffffffff )*

Documents pass through as raw BSON bytes: nothing is decoded or re-encoded, and
only one segment's worth of data is ever held in memory. This is the format and the
reader; archive_writer.py writes it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import bson
from fastcrc import crc64

from ..errors import IntegrityError

MAGIC = struct.pack("<I", 0x8199E26D)
TERMINATOR = b"\xff\xff\xff\xff"
FORMAT_VERSION = "0.1"
MIN_BSON = 5
# MongoDB's document limit is 16 MiB; allow the same headroom mongodump's parser does.
MAX_BSON = 16 * 1024 * 1024 + 16 * 1024
_LEN = struct.Struct("<i")
_INT64_MAX = 2**63
_CHUNK = 1 << 20


class ArchiveError(IntegrityError):
    """The stream is not a well-formed mongodump archive."""


def crc_update(crc: int | None, data: bytes | memoryview) -> int:
    """CRC-64 as mongodump computes it: Go's hash/crc64 with the ECMA table, i.e. CRC-64/XZ."""
    return crc64.xz(data, crc) if crc is not None else crc64.xz(data)


def _to_int64(crc: int) -> int:
    return crc - _INT64_MAX * 2 if crc >= _INT64_MAX else crc


@dataclass
class CollectionMetadata:
    db: str
    collection: str
    metadata: str = ""      # canonical extended JSON: {"options", "indexes", "uuid", "collectionName", "type"}
    size: int = 0
    type: str = "collection"

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.collection}"


@dataclass
class Header:
    concurrent_collections: int = 1
    version: str = FORMAT_VERSION
    server_version: str = ""
    tool_version: str = ""


@dataclass
class Segment:
    """Documents of one namespace, as concatenated raw BSON, with their count."""
    db: str
    collection: str
    data: bytes
    count: int
    end: bool = False       # the namespace's EOF block (segments(ends=True)): no data


@dataclass
class Prelude:
    header: Header
    collections: list[CollectionMetadata] = field(default_factory=list)


class ArchiveReader:
    """Reads an archive from a binary stream; every structural error is an ArchiveError.

    The stream is read in 1 MiB chunks and documents are found by walking their length
    prefixes in the buffer: a segment is one slice of it, not a join of one read per
    document (which cost ~4 µs a document, most of a restore's own CPU)."""

    def __init__(self, inp: BinaryIO):
        self._in = inp
        self._buf = b""          # read from the stream; self._buf[self._pos:] is not consumed yet
        self._pos = 0
        self.offset = 0          # archive bytes consumed
        self.prelude = self._read_prelude()
        self.eof: dict[tuple[str, str], int] = {}     # namespace -> CRC, once its EOF block was read

    def _available(self, n: int) -> bool:
        """At least n unconsumed bytes in the buffer; False when the stream ends first."""
        have = len(self._buf) - self._pos
        if have >= n:
            return True
        parts = [self._buf[self._pos:]]
        while have < n:
            data = self._in.read(max(_CHUNK, n - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        self._buf, self._pos = b"".join(parts), 0
        return have >= n

    def _truncated(self) -> ArchiveError:
        """The stream ended inside a structure: where (the bytes that did arrive counted)."""
        return ArchiveError(f"archive truncated at byte {self.offset + len(self._buf) - self._pos}")

    def _read_exact(self, n: int) -> bytes:
        if not self._available(n):
            raise self._truncated()
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        self.offset += n
        return data

    def _read_length(self) -> int | None:
        """The next int32 length; None for the terminator."""
        raw = self._read_exact(4)
        if raw == TERMINATOR:
            return None
        (n,) = _LEN.unpack(raw)
        if n < MIN_BSON or n > MAX_BSON:
            raise ArchiveError(f"invalid BSON length {n} at byte {self.offset - 4}")
        return n

    def _read_doc_rest(self, n: int, head: bytes) -> bytes:
        doc = head + self._read_exact(n - 4)
        if doc[-1] != 0:
            raise ArchiveError(f"BSON document at byte {self.offset - n} is not terminated")
        return doc

    def _decode(self, raw: bytes, what: str) -> dict:
        try:
            return bson.decode(raw)
        except Exception as exc:  # bson raises several types for garbage
            raise ArchiveError(f"corrupt {what} at byte {self.offset - len(raw)}: {exc}") from None

    def _read_doc(self, what: str) -> dict | None:
        n = self._read_length()
        if n is None:
            return None
        return self._decode(self._read_doc_rest(n, _LEN.pack(n)), what)

    def _read_prelude(self) -> Prelude:
        if self._read_exact(4) != MAGIC:
            raise ArchiveError("not a mongodump archive (bad magic number)")
        h = self._read_doc("archive header")
        if h is None:
            raise ArchiveError("archive header missing")
        try:
            header = Header(int(h.get("concurrent_collections", 1) or 1), str(h.get("version", "")),
                            str(h.get("server_version", "")), str(h.get("tool_version", "")))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ArchiveError(f"bad archive header: {exc}") from None
        prelude = Prelude(header)
        while (m := self._read_doc("collection metadata")) is not None:
            try:
                prelude.collections.append(CollectionMetadata(
                    str(m["db"]), str(m["collection"]), str(m.get("metadata", "")),
                    int(m.get("size", 0) or 0), str(m.get("type", "") or "collection")))
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise ArchiveError(f"bad collection metadata: {exc}") from None
        return prelude

    def _documents(self, limit: int) -> tuple[bytes, int, bool]:
        """Whole documents from the buffer, up to about `limit` bytes: (data, count, the
        block's terminator was reached and consumed)."""
        if not self._available(4):
            raise self._truncated()
        buf, start = self._buf, self._pos
        pos, end, count = start, len(buf), 0
        unpack = _LEN.unpack_from
        while pos + 4 <= end and pos - start < limit:
            (n,) = unpack(buf, pos)
            if n == -1:                                   # the terminator, 0xffffffff
                break
            if n < MIN_BSON or n > MAX_BSON:
                raise ArchiveError(f"invalid BSON length {n} at byte {self.offset + pos - start}")
            if pos + n > end:
                break                                     # runs past the buffer: read more below
            if buf[pos + n - 1] != 0:
                raise ArchiveError(f"BSON document at byte {self.offset + pos - start} is not terminated")
            pos += n
            count += 1
        self._pos = pos
        self.offset += pos - start
        data = buf[start:pos]
        if pos - start >= limit:
            return data, count, False
        if not self._available(4):
            raise self._truncated()
        if self._buf[self._pos:self._pos + 4] == TERMINATOR:
            self._pos += 4
            self.offset += 4
            return data, count, True
        (n,) = _LEN.unpack_from(self._buf, self._pos)
        if not count and (n < MIN_BSON or n > MAX_BSON or not self._available(n)):
            # nothing could be taken: a bad length, or a document cut by the end of the stream
            if n < MIN_BSON or n > MAX_BSON:
                raise ArchiveError(f"invalid BSON length {n} at byte {self.offset}")
            raise self._truncated()
        return data, count, False

    def segments(self, max_bytes: int = 8 * 1024 * 1024, ends: bool = False) -> Iterator[Segment]:
        """Yield documents namespace by namespace, in chunks of about `max_bytes`;
        checks each namespace's CRC at its EOF block. With `ends`, also an empty segment
        with `end` set after each namespace's EOF block (its last documents came before).
        One loop (over 60 lines) that follows spec.md's grammar step by step: header, body,
        EOF block, as mongo-tools' demultiplexer does; split, the CRC state would travel."""
        crc: dict[tuple[str, str], int | None] = {}
        while True:
            if not self._available(4):
                if len(self._buf) > self._pos:
                    raise ArchiveError(f"archive truncated at byte {self.offset}")
                break   # clean end of archive
            raw = self._read_exact(4)
            if raw == TERMINATOR:
                raise ArchiveError(f"unexpected terminator at byte {self.offset - 4}")
            (n,) = _LEN.unpack(raw)
            if n < MIN_BSON or n > MAX_BSON:
                raise ArchiveError(f"invalid BSON length {n} at byte {self.offset - 4}")
            hdr = self._decode(self._read_doc_rest(n, raw), "namespace header")
            try:
                key = (str(hdr["db"]), str(hdr["collection"]))
                is_eof = bool(hdr.get("EOF", False))
            except KeyError as exc:
                raise ArchiveError(f"namespace header without {exc}") from None
            if key in self.eof:
                raise ArchiveError(f"data for {key[0]}.{key[1]} after its end marker")
            if is_eof:
                if self._read_length() is not None:
                    raise ArchiveError(f"missing terminator after end of {key[0]}.{key[1]}")
                try:
                    expected = int(hdr.get("CRC", 0))
                except (TypeError, ValueError, OverflowError):
                    raise ArchiveError(f"bad CRC {hdr.get('CRC')!r} in the end marker of {key[0]}.{key[1]}") from None
                got = _to_int64(crc.pop(key, None) or 0)
                if expected != got:
                    raise ArchiveError(f"CRC mismatch for {key[0]}.{key[1]}: archive says {expected}, data gives {got}")
                self.eof[key] = got
                if ends:
                    yield Segment(key[0], key[1], b"", 0, end=True)
                continue
            parts: list[bytes] = []
            size = count = 0
            done = False
            while not done:
                data, n_docs, done = self._documents(max_bytes - size)
                if data:
                    parts.append(data)
                    size += len(data)
                    count += n_docs
                if size >= max_bytes or (done and count):
                    data = parts[0] if len(parts) == 1 else b"".join(parts)
                    crc[key] = crc_update(crc.get(key), data)
                    yield Segment(key[0], key[1], data, count)
                    parts, size, count = [], 0, 0
        open_ns = [f"{db}.{c}" for (db, c) in crc if (db, c) not in self.eof]
        if open_ns:
            raise ArchiveError(f"archive ends before the end of {', '.join(sorted(open_ns))}")
        # a view has no data; a time-series collection's data is under system.buckets.<name>
        # (under its own name from MongoDB 8.3)
        missing = [cm.namespace for cm in self.prelude.collections
                   if cm.type != "view" and (cm.db, cm.collection) not in self.eof
                   and not (cm.type == "timeseries" and (cm.db, "system.buckets." + cm.collection) in self.eof)]
        if missing:
            raise ArchiveError(f"archive ends before the end of {', '.join(sorted(missing))}")


def iter_documents(data: bytes | memoryview) -> Iterator[memoryview]:
    """Split concatenated raw BSON into documents (zero-copy)."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        (n,) = _LEN.unpack_from(view, pos)
        if n < MIN_BSON or pos + n > end:
            raise ArchiveError(f"invalid BSON length {n} inside a batch")
        yield view[pos:pos + n]
        pos += n
