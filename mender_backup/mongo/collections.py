"""Collections: their specs (options, indexes), their documents as raw BSON,
and what a restore creates."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterator

import pymongo
from bson.raw_bson import RawBSONDocument

from ..format.archive import iter_documents
from ..format.metadata import CollectionSpec


def specs(client: pymongo.MongoClient, db: str) -> list[CollectionSpec]:
    """Every collection and view of `db` but system.*, as the archive's metadata records them."""
    out = []
    for c in client[db].list_collections():
        name = c["name"]
        if name.startswith("system."):
            continue
        spec = CollectionSpec(db, name, c.get("type", "collection"), dict(c.get("options") or {}))
        uuid = (c.get("info") or {}).get("uuid")
        if uuid is not None:
            spec.uuid = uuid.as_uuid().hex if hasattr(uuid, "as_uuid") else str(uuid)
        if spec.type == "collection":
            spec.indexes = [dict(i) for i in client[db][name].list_indexes()]
            for i in spec.indexes:
                i.pop("ns", None)
        out.append(spec)
    return sorted(out, key=lambda s: s.name)


def size(client: pymongo.MongoClient, db: str, name: str) -> int:
    """The collection's data size as the server reports it (collStats); 0 when it does not."""
    try:
        return int(client[db].command("collStats", name).get("size") or 0)
    except (pymongo.errors.PyMongoError, TypeError, ValueError):
        return 0


def raw_batches(client: pymongo.MongoClient, db: str, name: str) -> Iterator[bytes]:
    """The collection's documents as concatenated raw BSON, batch by batch."""
    cursor = client[db][name].find_raw_batches({}, batch_size=1000, no_cursor_timeout=False)
    try:
        yield from cursor
    finally:
        cursor.close()


def create(client: pymongo.MongoClient, spec: CollectionSpec) -> None:
    client[spec.db].command({"create": spec.name, **spec.options})


def insert_raw(client: pymongo.MongoClient, db: str, name: str, data: bytes) -> int:
    # views into the segment, not copies: RawBSONDocument takes any buffer and pymongo's
    # encoder sends its bytes as they are (checked byte for byte)
    docs = [RawBSONDocument(d) for d in iter_documents(data)]
    if docs:
        client[db][name].insert_many(docs, ordered=False, bypass_document_validation=True)
    return len(docs)


def count(client: pymongo.MongoClient, db: str, name: str) -> int:
    """The documents the server holds (counted, not its estimate)."""
    return client[db][name].count_documents({})


def build_indexes(client: pymongo.MongoClient, db: str, name: str, specs: list[dict]) -> None:
    # "v" (index format version: int, double or decimal in archives of 3.4 to 8.0) is left to
    # the server: every supported MongoDB defaults to v2, and some compatible servers
    # (FerretDB) refuse the field; "ns" (3.4-4.2 specs) names the namespace, which the command does
    indexes = [{k: v for k, v in i.items() if k not in ("ns", "v")} for i in specs if i.get("name") != "_id_"]
    if indexes:
        client[db].command({"createIndexes": name, "indexes": indexes})


def expired(client: pymongo.MongoClient, db: str, name: str, indexes: list[dict], now: datetime) -> int:
    """Documents a TTL index of the collection already considers expired: MongoDB's TTL
    monitor deletes them within about a minute of the index build."""
    n = 0
    for i in indexes:
        keys = list((i.get("key") or {}).keys())
        if "expireAfterSeconds" in i and len(keys) == 1:     # MongoDB's TTL takes single-field indexes only
            cutoff = now - timedelta(seconds=float(i["expireAfterSeconds"]))
            n = max(n, client[db][name].count_documents({keys[0]: {"$lt": cutoff}}))
    return n


def index_names(client: pymongo.MongoClient, db: str, name: str) -> set[str]:
    return {i["name"] for i in client[db][name].list_indexes()}


def existing_counts(client: pymongo.MongoClient, namespaces: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Which of these collections exist on the target, with their document counts."""
    out = {}
    by_db: dict[str, list[str]] = {}
    for db, c in namespaces:
        by_db.setdefault(db, []).append(c)
    for db, colls in by_db.items():
        present = set(client[db].list_collection_names())
        for c in colls:
            if c in present:
                out[(db, c)] = client[db][c].estimated_document_count()
    return out
