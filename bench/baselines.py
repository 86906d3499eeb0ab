"""The "raw server" baselines, run as their own processes (`python -m bench.baselines ...`)
so they are timed exactly like mender-backup:

  read    URL [--threads N] [--db NAME...]   find_raw_batches over every collection, nothing
                                             written, nothing hashed: what the server can deliver
  insert  URL ARCHIVE [--workers N]          the documents of a (zstd) mongodump archive into the
                                             server with insert_many of RawBSONDocument batches:
                                             no sha256, no CRC, no digest, no indexes, no read-back
  indexes URL ARCHIVE                        the archive's indexes built on the collections (as
                                             mongorestore builds them, one createIndexes per
                                             collection, one collection after the other): the
                                             index part of a mongorestore run that could not do it

Both use pymongo the way mender-backup does (same batch sizes, same parallelism by
default), so the difference to mender-backup is our own work, and the rest is the server's.
Prints one JSON line: documents and bytes handled.
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import struct
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import pymongo
from bson.raw_bson import RawBSONDocument

SYSTEM = {"admin", "local", "config"}
_LEN = struct.Struct("<i")
TERMINATOR = b"\xff\xff\xff\xff"


def read_all(url: str, threads: int, only: list[str]) -> dict:
    client = pymongo.MongoClient(url)
    work: queue.Queue = queue.Queue()
    # the order mender-backup reads them in (databases, then collections, by name): with
    # parallel readers the order decides how the big collections overlap
    for db in sorted(client.list_database_names()):
        if db in SYSTEM or (only and db not in only):
            continue
        for c in sorted(client[db].list_collection_names()):
            if not c.startswith("system."):
                work.put((db, c))
    totals = {"documents": 0, "bytes": 0}
    lock = threading.Lock()

    def reader() -> None:
        while True:
            try:
                db, c = work.get_nowait()
            except queue.Empty:
                return
            n = b = 0
            for batch in client[db][c].find_raw_batches({}, batch_size=1000):
                b += len(batch)
                # documents in the batch, without hashing them (count the length prefixes)
                view, pos = memoryview(batch), 0
                while pos < len(view):
                    pos += _LEN.unpack_from(view, pos)[0]
                    n += 1
            with lock:
                totals["documents"] += n
                totals["bytes"] += b

    ts = [threading.Thread(target=reader) for _ in range(max(1, threads))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return totals


def _segments(f, max_bytes: int):
    """(db, collection, [raw docs]) chunks of about max_bytes from a plain mongodump archive,
    with no checks beyond what parsing needs."""
    import bson

    def read(n: int) -> bytes:
        data = f.read(n)
        while len(data) < n:
            more = f.read(n - len(data))
            if not more:
                raise EOFError("archive truncated")
            data += more
        return data

    def doc_or_end() -> bytes | None:
        head = read(4)
        if head == TERMINATOR:
            return None
        return head + read(_LEN.unpack(head)[0] - 4)

    read(4)                                  # magic
    doc_or_end()                             # header
    while doc_or_end() is not None:          # collection metadata
        pass
    while True:
        head = f.read(4)
        if not head:
            return
        hdr = bson.decode(head + read(_LEN.unpack(head)[0] - 4))
        key = (hdr["db"], hdr["collection"])
        if hdr.get("EOF"):
            doc_or_end()                     # its terminator
            continue
        docs, size = [], 0
        while (d := doc_or_end()) is not None:
            docs.append(RawBSONDocument(d))
            size += len(d)
            if size >= max_bytes:
                yield key[0], key[1], docs
                docs, size = [], 0
        if docs:
            yield key[0], key[1], docs


def insert_all(url: str, archive: str, workers: int, segment_bytes: int) -> dict:
    import zstandard

    client = pymongo.MongoClient(url)
    totals = {"documents": 0, "bytes": 0}
    with open(archive, "rb") as raw:
        head = raw.read(4)
        raw.seek(0)
        if head == b"\x28\xb5\x2f\xfd":
            f = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20,
                                                                              read_across_frames=True),
                                  buffer_size=1 << 20)
        else:
            f = io.BufferedReader(raw, buffer_size=1 << 20)

        def insert(db: str, c: str, docs: list) -> int:
            client[db][c].insert_many(docs, ordered=False, bypass_document_validation=True)
            return len(docs)

        with ThreadPoolExecutor(workers) as pool:
            pending: set = set()
            for db, c, docs in _segments(f, segment_bytes):
                totals["bytes"] += sum(len(d.raw) for d in docs)
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        totals["documents"] += fut.result()
                pending.add(pool.submit(insert, db, c, docs))
            for fut in wait(pending).done:
                totals["documents"] += fut.result()
    return totals


def build_indexes(url: str, archive: str) -> dict:
    """One createIndexes per collection with the archive's specs (without `ns` and `v`,
    which FerretDB v1 refuses), one collection after the other."""
    from mender_backup.format import compression
    from mender_backup.format.archive import ArchiveReader
    from mender_backup.format.metadata import CollectionSpec

    client = pymongo.MongoClient(url)
    n = 0
    with open(archive, "rb") as f:
        _, plain = compression.decompressor(f)
        prelude = ArchiveReader(plain).prelude
    for cm in prelude.collections:
        if cm.type != "collection" or not cm.db:
            continue
        spec = CollectionSpec.from_json(cm.db, cm.collection, cm.metadata, cm.type)
        indexes = [{k: v for k, v in i.items() if k not in ("ns", "v")} for i in spec.indexes if i.get("name") != "_id_"]
        if indexes:
            client[cm.db].command({"createIndexes": cm.collection, "indexes": indexes})
            n += len(indexes)
    return {"indexes": n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baselines")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read")
    r.add_argument("url")
    r.add_argument("--threads", type=int, default=4)
    r.add_argument("--db", action="append", default=[])
    i = sub.add_parser("insert")
    i.add_argument("url")
    i.add_argument("archive")
    i.add_argument("--workers", type=int, default=4)
    i.add_argument("--segment-bytes", type=int, default=2 * 1024 * 1024)   # as engine/load.py
    x = sub.add_parser("indexes")
    x.add_argument("url")
    x.add_argument("archive")
    a = p.parse_args(argv)
    if a.cmd == "read":
        out = read_all(a.url, a.threads, a.db)
    elif a.cmd == "indexes":
        out = build_indexes(a.url, a.archive)
    else:
        out = insert_all(a.url, a.archive, a.workers, a.segment_bytes)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
