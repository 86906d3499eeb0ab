"""mongodump archives written byte by byte from mongo-tools' common/archive/spec.md, with
the headers and metadata of the tool versions that went with MongoDB 3.4, 4.0, 5.0 and 7.0,
for what FerretDB cannot produce (admin users and roles, time-series collections, oplog
commands). Independent of mender_backup's own writer."""

from __future__ import annotations

import json
import struct

import bson
from bson import Int64

MAGIC = struct.pack("<I", 0x8199E26D)
TERMINATOR = b"\xff\xff\xff\xff"


def crc64(data: bytes) -> int:
    """Go's hash/crc64 with the ECMA table, bit by bit, as a signed int64."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xC96C5795D7870F42 if crc & 1 else crc >> 1
    crc ^= 0xFFFFFFFFFFFFFFFF
    return crc - 2**64 if crc >= 2**63 else crc


# (server_version, tool_version) of the mongodump that went with each server
TOOLS = {"3.4": ("3.4.24", "r3.4.24"), "4.0": ("4.0.28", "r4.0.28"), "5.0": ("5.0.30", "100.9.4"),
         "7.0": ("7.0.14", "100.10.0")}


def index(version: str, db: str, coll: str, name: str, key: dict, **opts) -> dict:
    """An index spec as that version's mongodump writes it: `ns` until 4.2, `v` as a plain
    number (3.4, 4.0), canonical int32 (5.0) or decimal (7.0, as some tools wrote it)."""
    spec: dict = {"v": 2, "key": key, "name": name, **opts}
    if version in ("3.4", "4.0"):
        spec["ns"] = f"{db}.{coll}"
    return spec


def metadata(version: str, db: str, coll: str, indexes: list[dict], options: dict | None = None,
             kind: str = "collection", uuid: str = "0123456789abcdef0123456789abcdef") -> str:
    """The metadata string of one collection, in that version's JSON dialect."""
    if version in ("3.4", "4.0"):
        # legacy extended JSON; 3.4 has neither uuid, nor collectionName, nor type
        meta: dict = {"options": options or {}, "indexes": indexes}
        if version == "4.0":
            meta["uuid"] = uuid
        return json.dumps(meta)
    meta = {"indexes": indexes, "uuid": uuid, "collectionName": coll, "type": kind}
    if options:
        meta = {"options": options, **meta}
    text = bson.json_util.dumps(meta, json_options=bson.json_util.CANONICAL_JSON_OPTIONS)
    if version == "7.0":     # index versions as decimals
        text = text.replace('"v": {"$numberInt": "2"}', '"v": {"$numberDecimal": "2"}')
    return text


def write(version: str, collections: list[dict], bodies: dict[tuple[str, str], list[dict]]) -> bytes:
    """collections: prelude entries {db, collection, metadata[, type]}; bodies: namespace ->
    documents. Every prelude namespace but views gets its EOF block, as mongodump writes."""
    server, tool = TOOLS[version]
    out = [MAGIC, bson.encode({"concurrent_collections": 4, "version": "0.1", "server_version": server,
                               "tool_version": tool})]
    for c in collections:
        entry = {"db": c["db"], "collection": c["collection"], "metadata": c.get("metadata", "")}
        entry["size"] = 0
        if version not in ("3.4", "4.0") or "type" in c:
            entry["type"] = c.get("type", "")
        out.append(bson.encode(entry))
    out.append(TERMINATOR)
    crcs = {}
    for (db, coll), docs in bodies.items():
        data = b"".join(d if isinstance(d, bytes) else bson.encode(d) for d in docs)
        if data:
            out += [bson.encode({"db": db, "collection": coll, "EOF": False, "CRC": Int64(0)}), data, TERMINATOR]
        crcs[(db, coll)] = crc64(data) if data else 0
    for (db, coll), crc in crcs.items():
        out += [bson.encode({"db": db, "collection": coll, "EOF": True, "CRC": Int64(crc)}), TERMINATOR]
    return b"".join(out)
