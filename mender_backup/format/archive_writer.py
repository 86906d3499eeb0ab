"""Writing the mongodump `--archive` format (archive.py has the layout and the reader):
the prelude, then segments of raw BSON that may interleave between collections, each
collection closed by its EOF block with the crc64 of its documents, as mongodump writes it."""

from __future__ import annotations

from typing import BinaryIO

import bson

from .archive import MAGIC, TERMINATOR, CollectionMetadata, Header, _to_int64, crc_update


class ArchiveWriter:
    """Writes an archive to a binary stream; segments of different collections may interleave."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._crc: dict[tuple[str, str], int | None] = {}

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)

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
