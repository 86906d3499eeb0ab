"""Oplog entries as MongoDB writes them (field for field, as a 5.0+ replica set member
logs them in local.oplog.rs), for tests that need entries FerretDB v1 never writes:
`$v: 2` diffs, commands, transactions. FerretDB's own entries are used wherever it
writes them (inserts, `$v: 1` updates, deletes)."""

from __future__ import annotations

import datetime as dt
import itertools

import bson
from bson import Int64, Timestamp

T0 = 1_795_000_000
_seq = itertools.count(1)


def entry(op: str, ns: str, o: dict, o2: dict | None = None, ts: Timestamp | None = None, **extra) -> bytes:
    """One entry; timestamps increase with every call unless given."""
    ts = ts or Timestamp(T0, next(_seq))
    doc = {"op": op, "ns": ns, "ui": bson.Binary(b"\x01" * 16, 4), "o": o}
    if o2 is not None:
        doc["o2"] = o2
    doc.update({"ts": ts, "t": Int64(1), "v": Int64(2),
                "wall": dt.datetime.fromtimestamp(ts.time, dt.timezone.utc) + dt.timedelta(milliseconds=ts.inc)})
    doc.update(extra)
    return bson.encode(doc)


def insert(ns: str, doc: dict, **kw) -> bytes:
    return entry("i", ns, doc, {"_id": doc["_id"]}, **kw)


def update_v2(ns: str, _id, diff: dict, **kw) -> bytes:
    return entry("u", ns, {"$v": 2, "diff": diff}, {"_id": _id}, **kw)


def update_v1(ns: str, _id, ops: dict, **kw) -> bytes:
    return entry("u", ns, {"$v": 1, **ops}, {"_id": _id}, **kw)


def delete(ns: str, _id, **kw) -> bytes:
    return entry("d", ns, {"_id": _id}, **kw)


def command(db: str, cmd: dict, **kw) -> bytes:
    return entry("c", f"{db}.$cmd", cmd, **kw)


def nested(op: str, ns: str, o: dict, o2: dict | None = None) -> dict:
    """An entry inside applyOps: no ts of its own."""
    d = {"op": op, "ns": ns, "ui": bson.Binary(b"\x01" * 16, 4), "o": o}
    if o2 is not None:
        d["o2"] = o2
    return d


def transaction(ops: list[dict], lsid: bytes = b"\x02" * 16, txn: int = 1, **flags) -> bytes:
    """An applyOps entry of a transaction (flags: partialTxn=True, prepare=True)."""
    return command("admin", {"applyOps": ops, **flags},
                   lsid={"id": bson.Binary(lsid, 4), "uid": bson.Binary(b"\x00" * 32, 0)}, txnNumber=Int64(txn))


def txn_command(name: str, lsid: bytes = b"\x02" * 16, txn: int = 1) -> bytes:
    return command("admin", {name: 1}, lsid={"id": bson.Binary(lsid, 4), "uid": bson.Binary(b"\x00" * 32, 0)},
                   txnNumber=Int64(txn))
