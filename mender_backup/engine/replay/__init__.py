"""Replaying oplog entries onto a restore target, the way mongorestore --oplogReplay
does (mongo-tools mongorestore/oplog.go), with ordinary commands (mongo/apply.py).

What is applied: inserts, updates (`$v:1` operators, `$v:2` diffs, whole documents),
deletes, and the commands mongorestore knows: create, drop, dropDatabase,
renameCollection, collMod, convertToCapped, emptycapped, applyOps (nested entries
and transactions: a transaction's entries apply at its commit, an aborted one never),
and the index commands, which change the index catalog built after the replay (the
indexes are built last, as mongorestore does since mongo-tools#358, so a unique
index never meets the intermediate states the oplog passes through).

What is skipped, and counted by reason: no-ops and internal bookkeeping entries
(n, cd, ci, cu, km, startIndexBuild, abortIndexBuild, setMultikeyMetadata,
dropIdent, dbCheck), the system databases and `system.*` collections the restore
skips (admin, local, config, __mdb_internal*; time-series buckets are data and
are applied), databases the restore was told to leave out, and an entry not newer
than the one before it (a backup's oplog and its first slice, and consecutive
slices, share entries: each is applied once).

`dropDatabase` drops the collections this restore owns in that database, never the
target's other collections (a restore never drops what it was not asked to).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo import errors as perr

from ...errors import IntegrityError, MenderBackupError
from ...format.archive import MAX_BSON, MIN_BSON
from ...format.slices import OpTime
from ...mongo import oplog as mongo_oplog
from ...mongo import rawbson
from ...mongo.apply import Writer
from ...mongo.client import SYSTEM_DATABASES
from .commands import COMMANDS, IndexCatalog

SKIPPED_OPS = {"n": "no-op", "cd": "internal bookkeeping", "ci": "internal bookkeeping",
               "cu": "internal bookkeeping", "km": "internal bookkeeping"}
SKIPPED_COMMANDS = {"startIndexBuild", "abortIndexBuild", "setMultikeyMetadata", "dropIdent", "dbCheck"}
_LEN = struct.Struct("<i")


@dataclass
class Limit:
    """Replay up to and including this time (wall clock) or oplog timestamp."""
    time: datetime | None = None
    ts: Timestamp | None = None

    def passed(self, entry: RawBSONDocument) -> bool:
        if self.ts is not None and entry["ts"] > self.ts:
            return True
        return self.time is not None and mongo_oplog.entry_time(entry) > self.time

    def describe(self) -> str:
        return self.time.isoformat() if self.time else f"{self.ts.time}:{self.ts.inc}" if self.ts else "the end"


@dataclass
class Stats:
    entries: int = 0
    applied: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    first: OpTime | None = None
    last: OpTime | None = None           # the newest entry applied (or that would be)
    reached_limit: bool = False

    def as_dict(self) -> dict:
        return {"entries": self.entries, "applied": dict(self.applied), "skipped": dict(self.skipped),
                "first": self.first.as_json() if self.first else None,
                "last": self.last.as_json() if self.last else None, "reached_limit": self.reached_limit}


def _decode(raw: bytes) -> dict:
    """A command's arguments as Python values (nothing of them is written back raw)."""
    import bson
    from bson.codec_options import DatetimeConversion
    return bson.decode(raw, bson.CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO))


class Replay:
    """Feed it entries in oplog order; `finish` sends what is queued. With client=None
    (a dry run) it only counts what it would apply and skip."""

    def __init__(self, client, catalog: IndexCatalog, databases: set[str] | None = None,
                 limit: Limit | None = None):
        self.client, self.catalog, self.databases = client, catalog, databases
        self.limit = limit
        self.writer = Writer(client) if client is not None else None
        self.stats = Stats()
        self._txns: dict[tuple[bytes, int], list[tuple[bytes, Timestamp]]] = {}
        self._ts: Timestamp | None = None

    # -- input
    def feed_stream(self, stream: BinaryIO) -> bool:
        """Entries as concatenated raw BSON; False once the limit is passed (stop feeding)."""
        while True:
            head = stream.read(4)
            if not head:
                return True
            if len(head) < 4:
                raise IntegrityError("oplog truncated inside an entry")
            (n,) = _LEN.unpack(head)
            if n < MIN_BSON or n > MAX_BSON:
                raise IntegrityError(f"invalid oplog entry length {n}")
            raw = head + stream.read(n - 4)
            if len(raw) != n:
                raise IntegrityError("oplog truncated inside an entry")
            if not self.feed(raw):
                return False

    def feed(self, raw: bytes) -> bool:
        entry = RawBSONDocument(raw)
        ts = entry.get("ts")
        if not isinstance(ts, Timestamp):
            raise IntegrityError("oplog entry without a timestamp")
        if self._ts is not None and ts <= self._ts:
            self.stats.skipped["already replayed"] += 1
            return True
        if self.limit is not None and self.limit.passed(entry):
            self.stats.reached_limit = True
            return False
        self.stats.entries += 1
        self._ts = ts
        here = mongo_oplog.optime(entry)
        self.stats.first = self.stats.first or here
        try:
            self._handle(raw, top=True)
        except rawbson.BsonError as exc:
            raise IntegrityError(f"oplog entry at {here}: {exc}") from None
        except perr.PyMongoError as exc:
            msg = exc.details.get("errmsg", exc) if isinstance(exc, perr.OperationFailure) and exc.details else exc
            raise MenderBackupError(f"replaying the oplog entry at {here} failed: {msg}") from None
        self.stats.last = here
        return True

    def finish(self) -> Stats:
        if self.writer:
            self.writer.flush()
            if self.writer.missing:
                self.stats.skipped["update of a document a later entry deletes"] += self.writer.missing
        return self.stats

    # -- routing
    def _skip_ns(self, db: str, coll: str) -> str:
        if db in SYSTEM_DATABASES or db.startswith("__mdb_internal"):
            return "system database"
        if coll.startswith("system.") and not coll.startswith("system.buckets."):
            return "system collection"
        if self.databases is not None and db not in self.databases:
            return "database not restored"
        return ""

    def _handle(self, raw: bytes, top: bool) -> None:
        entry = RawBSONDocument(raw)
        op = entry.get("op")
        if op in SKIPPED_OPS:
            self.stats.skipped[SKIPPED_OPS[op]] += 1
            return
        ns = entry.get("ns", "")
        db, _, coll = ns.partition(".")
        if op == "c":
            self._command(entry, db, top)
            return
        if op not in ("i", "u", "d"):
            raise rawbson.BsonError(f"unknown oplog operation {op!r}")
        why = self._skip_ns(db, coll)
        if why:
            self.stats.skipped[why] += 1
            return
        self.stats.applied[{"i": "insert", "u": "update", "d": "delete"}[op]] += 1
        if (db, coll) not in self.catalog.indexes and not coll.startswith("system.buckets."):
            self.catalog.add_collection(db, coll)          # a collection born during the oplog
        if self.writer is None:
            return
        o = entry["o"].raw
        if op == "i":
            self.writer.insert(db, coll, o)
        elif op == "d":
            self.writer.delete(db, coll, o)
        else:
            o2 = entry.get("o2")
            key = o2.raw if o2 is not None else rawbson.only(o, "_id")
            self.writer.update(db, coll, key, o)

    # -- commands
    def _command(self, entry: RawBSONDocument, db: str, top: bool) -> None:
        o = entry["o"]
        name = next(iter(o.keys()), "")
        if top and "lsid" in entry and "txnNumber" in entry and entry.get("multiOpType") != 1 \
                and name in ("applyOps", "commitTransaction", "abortTransaction"):
            self._transaction(entry, o, name)
            return
        if name == "applyOps":
            for nested in o["applyOps"]:
                self._handle(nested.raw, top=False)
            return
        if name in SKIPPED_COMMANDS:
            self.stats.skipped["index build bookkeeping" if "Index" in name else name] += 1
            return
        if name == "upgradeDowngradeViewlessTimeseries":
            raise rawbson.BsonError("the oplog crosses a time-series format conversion (an FCV change between "
                                    "8.x and 9.0), which cannot be replayed; restore to a time before it")
        args = _decode(o.raw)
        if name == "renameCollection":
            self._rename(args)
            return
        target = args.get(name) if isinstance(args.get(name), str) else ""
        why = self._skip_ns(db, target)
        if why:
            self.stats.skipped[why] += 1
            return
        handler = COMMANDS.get(name)
        if handler is None:
            raise rawbson.BsonError(f"unknown oplog command {name!r}")
        self.stats.applied["command"] += 1
        if self.writer is not None:
            self.writer.flush()
        handler(self, db, target, args)

    def _transaction(self, entry: RawBSONDocument, o: RawBSONDocument, name: str) -> None:
        key = (entry["lsid"].raw, int(entry["txnNumber"]))
        if name == "abortTransaction":
            self._txns.pop(key, None)
            self.stats.skipped["aborted transaction"] += 1
            return
        ops = self._txns.setdefault(key, [])
        if name == "applyOps":
            ops += [(nested.raw, self._ts) for nested in o["applyOps"]]
            if o.get("partialTxn") or o.get("prepare"):
                return              # more to come, or waits for commitTransaction
        for raw, _ in self._txns.pop(key, []):
            self._handle(raw, top=False)

    def _rename(self, args: dict) -> None:
        src, dst = str(args.get("renameCollection", "")), str(args.get("to", ""))
        sdb, _, scoll = src.partition(".")
        ddb, _, dcoll = dst.partition(".")
        why = self._skip_ns(sdb, scoll) or self._skip_ns(ddb, dcoll)
        if why:
            self.stats.skipped[why] += 1
            return
        self.stats.applied["command"] += 1
        if self.writer is not None:
            self.writer.flush()
            self.client.admin.command({"renameCollection": src, "to": dst,
                                       "dropTarget": bool(args.get("dropTarget", False))})
        self.catalog.rename((sdb, scoll), (ddb, dcoll))

    def _run(self, db: str, cmd: dict) -> None:
        if self.writer is not None:
            self.client[db].command(cmd)
