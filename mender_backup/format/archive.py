"""The mongodump `--archive` format, streaming, in both directions.

Layout (mongo-tools common/archive/spec.md):
    magic 0x8199e26d (LE) | header doc | collection-metadata docs | 0xffffffff |
    ( namespace-header doc, documents..., 0xffffffff
    | eof-header doc {EOF: true, CRC: crc64-ecma of the namespace's documents}, 0xffffffff )*

Documents pass through as raw BSON bytes: nothing is decoded or re-encoded, and
only one segment's worth of data is ever held in memory.
"""

from __future__ import annotations

import io
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


class ArchiveWriter:
    """Writes an archive to a binary stream; segments of different collections may interleave."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._crc: dict[tuple[str, str], int | None] = {}
        self.bytes_written = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.bytes_written += len(data)

    def write_prelude(self, header: Header, collections: list[CollectionMetadata]) -> None:
        self._write(MAGIC)
        self._write(bson.encode({
            "concurrent_collections": bson.int64.Int64(header.concurrent_collections)
            if header.concurrent_collections > 2**31 - 1 else header.concurrent_collections,
            "version": header.version, "server_version": header.server_version,
            "tool_version": header.tool_version,
        }))
        for cm in collections:
            self._write(bson.encode({"db": cm.db, "collection": cm.collection, "metadata": cm.metadata,
                                     "size": cm.size, "type": cm.type}))
            self._crc[(cm.db, cm.collection)] = None
        self._write(TERMINATOR)

    def write_segment(self, db: str, collection: str, documents: bytes | memoryview) -> None:
        """One namespace segment: `documents` is concatenated raw BSON (a raw batch)."""
        if not documents:
            return
        key = (db, collection)
        self._crc[key] = crc_update(self._crc.get(key), documents)
        self._write(bson.encode({"db": db, "collection": collection, "EOF": False, "CRC": bson.int64.Int64(0)}))
        self._write(documents)
        self._write(TERMINATOR)

    def end_collection(self, db: str, collection: str) -> None:
        crc = self._crc.pop((db, collection), None)
        # a collection without documents has the CRC of nothing: 0, as Go's hash of no bytes
        value = _to_int64(crc) if crc is not None else 0
        self._write(bson.encode({"db": db, "collection": collection, "EOF": True,
                                 "CRC": bson.int64.Int64(value)}))
        self._write(TERMINATOR)


@dataclass
class Segment:
    """Documents of one namespace, as concatenated raw BSON, with their count."""
    db: str
    collection: str
    data: bytes
    count: int


@dataclass
class Prelude:
    header: Header
    collections: list[CollectionMetadata] = field(default_factory=list)


class ArchiveReader:
    """Reads an archive from a binary stream; every structural error is an ArchiveError."""

    def __init__(self, inp: BinaryIO):
        self._in = inp
        self.offset = 0
        self.prelude = self._read_prelude()
        self.eof: dict[tuple[str, str], int] = {}     # namespace -> CRC, once its EOF block was read

    def _read_exact(self, n: int) -> bytes:
        data = self._in.read(n)
        while data is not None and len(data) < n:
            more = self._in.read(n - len(data))
            if not more:
                break
            data += more
        if data is None or len(data) != n:
            raise ArchiveError(f"archive truncated at byte {self.offset + len(data or b'')}")
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
        header = Header(int(h.get("concurrent_collections", 1) or 1), str(h.get("version", "")),
                        str(h.get("server_version", "")), str(h.get("tool_version", "")))
        prelude = Prelude(header)
        while (m := self._read_doc("collection metadata")) is not None:
            try:
                prelude.collections.append(CollectionMetadata(
                    str(m["db"]), str(m["collection"]), str(m.get("metadata", "")),
                    int(m.get("size", 0) or 0), str(m.get("type", "") or "collection")))
            except (KeyError, TypeError, ValueError) as exc:
                raise ArchiveError(f"bad collection metadata: {exc}") from None
        return prelude

    def segments(self, max_bytes: int = 8 * 1024 * 1024) -> Iterator[Segment]:
        """Yield documents namespace by namespace, in chunks of about `max_bytes`;
        checks each namespace's CRC at its EOF block."""
        crc: dict[tuple[str, str], int | None] = {}
        while True:
            raw = self._in.read(4)
            if not raw:
                break   # clean end of archive
            if len(raw) < 4:
                raise ArchiveError(f"archive truncated at byte {self.offset}")
            self.offset += 4
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
                expected = int(hdr.get("CRC", 0))
                got = _to_int64(crc.pop(key, None) or 0)
                if expected != got:
                    raise ArchiveError(f"CRC mismatch for {key[0]}.{key[1]}: archive says {expected}, data gives {got}")
                self.eof[key] = got
                continue
            buf = io.BytesIO()
            count = 0
            while (dn := self._read_length()) is not None:
                doc = self._read_doc_rest(dn, _LEN.pack(dn))
                buf.write(doc)
                count += 1
                if buf.tell() >= max_bytes:
                    data = buf.getvalue()
                    crc[key] = crc_update(crc.get(key), data)
                    yield Segment(key[0], key[1], data, count)
                    buf = io.BytesIO()
                    count = 0
            if count:
                data = buf.getvalue()
                crc[key] = crc_update(crc.get(key), data)
                yield Segment(key[0], key[1], data, count)
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
