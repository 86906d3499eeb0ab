"""MongoDB access for dump and restore: raw BSON in and out, nothing decoded.

Dump reads each collection as raw batches (`find_raw_batches`), restore inserts
`RawBSONDocument`s built on the archive's bytes: documents are never turned into
Python objects, which keeps both fast and memory flat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import pymongo
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument
from pymongo import errors as perr
from pymongo import uri_parser

from .archive import iter_documents
from .errors import MenderBackupError, UnreachableError, UsageError
from .redact import redact_url, register_url_secrets

SYSTEM_DATABASES = {"admin", "local", "config"}
BATCH_BYTES = 4 * 1024 * 1024


def connect(url: str, timeout_ms: int = 10000) -> pymongo.MongoClient:
    """Connect and ping; every failure is one clear line."""
    if not url:
        raise UsageError("no MongoDB URL given (set MONGODB_URL or --mongodb-url)")
    register_url_secrets(url)
    try:
        given = {k.lower() for k in uri_parser.parse_uri(url)["options"]}
    except (perr.InvalidURI, perr.ConfigurationError, ValueError) as exc:
        raise UsageError(f"bad MongoDB URL {redact_url(url)!r}: {exc}") from None
    # our defaults only where the URL sets nothing: keyword arguments would override it
    defaults = {"serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms, "appname": "mender-backup"}
    kwargs = {k: v for k, v in defaults.items() if k.lower() not in given}
    try:
        client = pymongo.MongoClient(url, **kwargs)
        client.admin.command("ping")
    except perr.OperationFailure as exc:
        if exc.code == 18 or "auth" in str(exc).lower():
            raise UnreachableError(f"MongoDB at {redact_url(url)}: authentication failed") from None
        raise UnreachableError(f"MongoDB at {redact_url(url)}: {exc.details.get('errmsg', exc)}") from None
    except perr.PyMongoError as exc:
        raise UnreachableError(f"cannot connect to MongoDB at {redact_url(url)}: {type(exc).__name__}") from None
    return client


def server_version(client: pymongo.MongoClient) -> str:
    try:
        return str(client.server_info().get("version", ""))
    except perr.PyMongoError:
        return ""


def list_databases(client: pymongo.MongoClient, only: list[str] | None = None) -> list[str]:
    names = [n for n in client.list_database_names() if n not in SYSTEM_DATABASES]
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise UsageError(f"database(s) not found on the server: {', '.join(missing)}")
        names = [n for n in names if n in only]
    return sorted(names)


@dataclass
class CollectionInfo:
    db: str
    name: str
    type: str = "collection"
    options: dict = field(default_factory=dict)
    indexes: list[dict] = field(default_factory=list)
    uuid: str | None = None

    def metadata_json(self) -> str:
        """The collection's metadata as mongodump writes it (canonical extended JSON)."""
        meta: dict = {"options": self.options, "indexes": self.indexes}
        if self.uuid:
            meta["uuid"] = self.uuid
        meta["collectionName"] = self.name
        meta["type"] = self.type
        return json_util.dumps(meta, json_options=CANONICAL_JSON_OPTIONS)

    @classmethod
    def from_metadata(cls, db: str, name: str, metadata: str, type_: str = "collection") -> "CollectionInfo":
        if not metadata:
            return cls(db, name, type_ or "collection")
        try:
            meta = json_util.loads(metadata)
        except Exception as exc:
            raise MenderBackupError(f"bad metadata for {db}.{name}: {exc}") from None
        return cls(db, name, meta.get("type") or type_ or "collection", dict(meta.get("options") or {}),
                   list(meta.get("indexes") or []), meta.get("uuid"))


def collections(client: pymongo.MongoClient, db: str) -> list[CollectionInfo]:
    out = []
    for c in client[db].list_collections():
        name = c["name"]
        if name.startswith("system."):
            continue
        info = CollectionInfo(db, name, c.get("type", "collection"), dict(c.get("options") or {}))
        uuid = (c.get("info") or {}).get("uuid")
        if uuid is not None:
            info.uuid = uuid.as_uuid().hex if hasattr(uuid, "as_uuid") else str(uuid)
        if info.type == "collection":
            info.indexes = [dict(i) for i in client[db][name].list_indexes()]
            for i in info.indexes:
                i.pop("ns", None)
        out.append(info)
    return sorted(out, key=lambda i: i.name)


def raw_batches(client: pymongo.MongoClient, db: str, name: str) -> Iterator[bytes]:
    """The collection's documents as concatenated raw BSON, batch by batch."""
    cursor = client[db][name].find_raw_batches({}, batch_size=1000, no_cursor_timeout=False)
    try:
        yield from cursor
    finally:
        cursor.close()


def count(client: pymongo.MongoClient, db: str, name: str) -> int:
    return client[db][name].count_documents({})


def create_collection(client: pymongo.MongoClient, info: CollectionInfo) -> None:
    cmd = {"create": info.name, **info.options}
    client[info.db].command(cmd)


def insert_raw(client: pymongo.MongoClient, db: str, name: str, data: bytes) -> int:
    docs = [RawBSONDocument(bytes(d)) for d in iter_documents(data)]
    if docs:
        client[db][name].insert_many(docs, ordered=False, bypass_document_validation=True)
    return len(docs)


def create_indexes(client: pymongo.MongoClient, info: CollectionInfo) -> None:
    # "v" (index format version) is left to the server: every supported MongoDB defaults
    # to v2, and some compatible servers (FerretDB) refuse the field
    specs = [{k: v for k, v in i.items() if k not in ("ns", "v")} for i in info.indexes if i.get("name") != "_id_"]
    if specs:
        client[info.db].command({"createIndexes": info.name, "indexes": specs})


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
