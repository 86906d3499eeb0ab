"""Writing oplog entries to a server with ordinary commands.

mongorestore replays each entry with the server's `applyOps`; FerretDB and
DocumentDB have no `applyOps`, so we translate, with applyOps' own semantics for a
replay: an insert replaces a document that is already there and an update that
carries the whole document or `$set`s inserts it when missing (the entries are
applied on top of a copy that may already reflect them: every entry must be safe to
apply twice). Documents stay raw BSON from the entry to the server.

Consecutive writes to one collection go to the server in one ordered bulk write.
"""

from __future__ import annotations

import pymongo
from bson import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, ReplaceOne, UpdateOne

from . import diff as docdiff
from . import rawbson

RAW = CodecOptions(document_class=RawBSONDocument)
# FerretDB v1.24 never answers an `update` command of 100 or more statements (tests/ENVIRONMENT.md)
BATCH = 64


def _raw(doc: bytes) -> RawBSONDocument:
    return RawBSONDocument(doc)


class Writer:
    """Queues document writes per collection; `flush` sends them, in order."""

    def __init__(self, client: pymongo.MongoClient):
        self.client = client
        self._ns: tuple[str, str] | None = None
        self._ops: list = []
        self.missing = 0          # $v:2 updates of a document that is not there (a later entry deletes it)

    def _queue(self, db: str, coll: str, op) -> None:
        if self._ns != (db, coll) or len(self._ops) >= BATCH:
            self.flush()
            self._ns = (db, coll)
        self._ops.append(op)

    def flush(self) -> None:
        if self._ops and self._ns:
            db, coll = self._ns
            self.client[db][coll].bulk_write(self._ops, ordered=True)
        self._ops = []

    def insert(self, db: str, coll: str, doc: bytes) -> None:
        key = rawbson.only(doc, "_id")
        self._queue(db, coll, ReplaceOne(_raw(key), _raw(doc), upsert=True))

    def delete(self, db: str, coll: str, key: bytes) -> None:
        self._queue(db, coll, DeleteOne(_raw(key)))

    def update(self, db: str, coll: str, key: bytes, o: bytes) -> None:
        """`o` is what the entry's `o` holds: a `$v: 2` diff, `$set`/`$unset` operators
        (`$v: 1` and older), or the whole new document."""
        version = rawbson.field(o, "$v")
        v = version.as_int() if version is not None else 1
        if v == 2:
            d = rawbson.field(o, "diff")
            if d is None or d.type != rawbson.DOCUMENT:
                raise rawbson.BsonError("a $v:2 update without its diff")
            self.flush()          # the diff applies to the document as the queued writes leave it
            cur = self.client[db].get_collection(coll, codec_options=RAW).find_one(_raw(key))
            if cur is None:
                self.missing += 1
                return
            self._queue(db, coll, ReplaceOne(_raw(key), _raw(docdiff.apply(cur.raw, d.value))))
            return
        if v != 1:
            raise rawbson.BsonError(f"an update of unknown format $v: {v}")
        body = rawbson.without(o, "$v")
        names = [e.name for e in rawbson.elements(body)]
        if names and all(n.startswith("$") for n in names):
            self._queue(db, coll, UpdateOne(_raw(key), _raw(body), upsert=True))
        elif any(n.startswith("$") for n in names):
            raise rawbson.BsonError(f"an update mixing operators and fields: {', '.join(names)}")
        else:
            self._queue(db, coll, ReplaceOne(_raw(key), _raw(body), upsert=True))

    def delete_all(self, db: str, coll: str) -> None:
        self.flush()
        self.client[db][coll].delete_many({})
