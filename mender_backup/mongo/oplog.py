"""Reading a server's oplog (`local.oplog.rs`) by timestamp ranges.

A replica set member records every write there, in timestamp order; mongodump
`--oplog` and our consistent backups copy the entries written while a dump ran,
and `mender-backup oplog` ships the entries since its last run. We read by `ts`
ranges, never with tailable cursors: FerretDB v1 does not deliver new entries to
one, and a range read is what both uses need.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

import pymongo
from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo import errors as perr

from ..errors import MenderBackupError
from ..format.slices import OpTime

DB, COLLECTION = "local", "oplog.rs"


def available(client: pymongo.MongoClient) -> str:
    """"" when the server has an oplog we can read; otherwise why not (one line)."""
    try:
        names = client[DB].list_collection_names(filter={"name": COLLECTION})
    except perr.OperationFailure as exc:
        return f"cannot read {DB}.{COLLECTION}: {exc.details.get('errmsg', exc) if exc.details else exc}"
    if not names:
        return "the server has no oplog (a standalone server, not a replica set member)"
    return ""


def _coll(client: pymongo.MongoClient):
    return client[DB].get_collection(COLLECTION)


def _edge(client: pymongo.MongoClient, direction: int) -> Timestamp | None:
    doc = _coll(client).find_one({}, {"ts": 1}, sort=[("$natural", direction)])
    return doc["ts"] if doc else None


def newest(client: pymongo.MongoClient) -> Timestamp | None:
    return _edge(client, -1)


def oldest(client: pymongo.MongoClient) -> Timestamp | None:
    return _edge(client, 1)


def first_from(client: pymongo.MongoClient, since: Timestamp | None) -> Timestamp | None:
    """The timestamp of the first entry at or after `since` (the oldest entry without)."""
    query = {"ts": {"$gte": since}} if since is not None else {}
    doc = _coll(client).find_one(query, {"ts": 1}, sort=[("$natural", 1)])
    return doc["ts"] if doc else None


def copy_start(client: pymongo.MongoClient) -> Timestamp | None:
    """Where a consistent copy starts: the newest entry, or the start of the oldest
    transaction still open (its earlier entries belong to the copy), as mongodump."""
    start = newest(client)
    try:
        txn = client.config.transactions.find_one({"state": {"$in": ["prepared", "inProgress"]}},
                                                  sort=[("startOpTime", 1)])
    except perr.OperationFailure:
        txn = None
    ts = ((txn or {}).get("startOpTime") or {}).get("ts")
    if isinstance(ts, Timestamp) and (start is None or ts < start):
        return ts
    return start


def rolled_over(client: pymongo.MongoClient, since: Timestamp | None) -> bool:
    """True when entries after `since` may be gone: the oldest entry left is newer."""
    if since is None:
        return False
    first = oldest(client)
    return first is None or first > since


def raw_range(client: pymongo.MongoClient, start: Timestamp | None, end: Timestamp,
              batch_size: int = 1000) -> Iterator[bytes]:
    """Entries with start <= ts <= end (every entry up to `end` without a start), as
    concatenated raw BSON, in oplog order."""
    query: dict = {"ts": {"$lte": end}}
    if start is not None:
        query["ts"]["$gte"] = start
    cursor = _coll(client).find_raw_batches(query, sort=[("$natural", 1)], batch_size=batch_size)
    try:
        yield from cursor
    finally:
        cursor.close()


def entry_time(entry: RawBSONDocument) -> datetime:
    """When an entry was written: its `wall` clock (MongoDB 3.6+, FerretDB), to the
    millisecond, else the seconds of its `ts`."""
    wall = entry.get("wall")
    if isinstance(wall, datetime):
        return wall if wall.tzinfo else wall.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(entry["ts"].time, timezone.utc)


def optime(entry: RawBSONDocument) -> OpTime:
    ts = entry["ts"]
    return OpTime(ts.time, ts.inc, entry_time(entry).isoformat(timespec="milliseconds"))


def refuse_uncapturable(entry: RawBSONDocument) -> None:
    """What mongodump refuses to capture with --oplog, we refuse too: a restore could
    not replay it faithfully (a rename moves data the dump read under another name)."""
    ns = entry.get("ns", "")
    o = entry.get("o") or {}
    if ns == "admin.system.version":
        why = "admin.system.version (feature compatibility or auth schema) changed"
    elif "renameCollection" in o:
        why = f"a collection was renamed ({o.get('renameCollection')} -> {o.get('to')})"
    elif "importCollection" in o:
        why = "a collection was imported"
    elif "upgradeDowngradeViewlessTimeseries" in o:
        why = "a time-series format conversion (an FCV change) ran"
    elif ns.split(".", 1)[0] == "config" and o.get("create") in (
            "reshardingOperations", "localReshardingOperations.donor", "localReshardingOperations.recipient"):
        why = "a resharding operation started"
    else:
        return
    raise MenderBackupError(f"cannot make a consistent backup: {why} while it ran; run it again")
