"""Oplog replay (engine/replay/) against a real server: entries as MongoDB 5.0+ logs
them (tests/oplogs.py; FerretDB v1 logs only inserts, `$v:1` updates and deletes) applied
to FerretDB, then read back as raw bytes. The expected documents follow the server's
diff rules (src/mongo/db/update/document_diff_applier.cpp), written out by hand."""

from __future__ import annotations

import datetime as dt

import bson
import pytest
from bson import CodecOptions, Int64, Timestamp
from bson.raw_bson import RawBSONDocument

from mender_backup.engine.replay import IndexCatalog, Limit, Replay
from mender_backup.errors import IntegrityError, MenderBackupError
from mender_backup.mongo import collections as mongo
from tests import oplogs

RAW = CodecOptions(document_class=RawBSONDocument)


def raw_docs(client, db: str, coll: str) -> dict:
    return {bson.decode(d.raw)["_id"]: d.raw
            for d in client[db].get_collection(coll, codec_options=RAW).find()}


def replay(client, entries: list[bytes], catalog: IndexCatalog | None = None, **kw) -> Replay:
    r = Replay(client, catalog or IndexCatalog(), **kw)
    for e in entries:
        if not r.feed(e):
            break
    r.finish()
    return r


@pytest.fixture
def coll(ferretdb, dbname):
    yield ferretdb.client(), dbname, f"{dbname}.c"
    ferretdb.client().drop_database(dbname)


DIFFS = [
    # delete in place, replace in place, append at the end
    ({"_id": 1, "a": 1, "b": 2, "c": 3}, {"d": {"a": False}, "u": {"b": 20}, "i": {"z": 9}},
     {"_id": 1, "b": 20, "c": 3, "z": 9}),
    # `u` of a field the document lacks appends it; `i` of a field it has moves it to the end
    ({"_id": 1, "a": 1, "b": 2}, {"u": {"n": 1}, "i": {"a": 5}}, {"_id": 1, "b": 2, "n": 1, "a": 5}),
    # a sub-document diff
    ({"_id": 1, "s": {"x": 1, "y": 2}, "t": 0}, {"ss": {"u": {"x": 10}, "i": {"w": 1}}},
     {"_id": 1, "s": {"x": 10, "y": 2, "w": 1}, "t": 0}),
    # an array diff: update an index, shrink
    ({"_id": 1, "arr": [1, 2, 3, 4]}, {"sarr": {"a": True, "l": 2, "u1": 20}}, {"_id": 1, "arr": [1, 20]}),
    # grow: unmentioned new indexes are null
    ({"_id": 1, "arr": [1]}, {"sarr": {"a": True, "l": 4, "u2": 7}}, {"_id": 1, "arr": [1, None, 7, None]}),
    # a diff of a document inside an array
    ({"_id": 1, "arr": [{"k": 1}, {"k": 2}]}, {"sarr": {"a": True, "s1": {"u": {"k": 5}}}},
     {"_id": 1, "arr": [{"k": 1}, {"k": 5}]}),
    # re-applied to a later version whose field changed type: null until a later entry sets it
    ({"_id": 1, "s": 5}, {"ss": {"u": {"x": 1}}}, {"_id": 1, "s": None}),
    # untouched values keep their exact bytes: int64 stays int64, dates to the millisecond
    ({"_id": 1, "big": Int64(5), "when": dt.datetime(2026, 1, 2, 3, 4, 5, 678000)}, {"i": {"x": 1}},
     {"_id": 1, "big": Int64(5), "when": dt.datetime(2026, 1, 2, 3, 4, 5, 678000), "x": 1}),
]


@pytest.mark.parametrize("pre,diff,post", DIFFS)
def test_v2_diff_gives_the_servers_document_byte_for_byte(coll, pre, diff, post):
    client, db, ns = coll
    replay(client, [oplogs.insert(ns, pre), oplogs.update_v2(ns, 1, diff)])
    assert raw_docs(client, db, "c")[1] == bson.encode(post)


def test_v1_updates_replacements_deletes_and_inserts_of_present_documents(coll):
    client, db, ns = coll
    client[db].c.insert_one({"_id": 3, "old": True})           # the copy already holds it: insert replaces
    r = replay(client, [
        oplogs.insert(ns, {"_id": 1, "a": 1, "b": 2}),
        oplogs.update_v1(ns, 1, {"$set": {"a": 10, "c": 3}, "$unset": {"b": True}}),
        oplogs.insert(ns, {"_id": 2, "x": 1}),
        oplogs.entry("u", ns, {"_id": 2, "whole": "document"}, {"_id": 2}),   # a replacement
        oplogs.insert(ns, {"_id": 3, "new": True}),
        oplogs.insert(ns, {"_id": 4}),
        oplogs.delete(ns, 4),
        oplogs.update_v2(ns, 99, {"u": {"x": 1}}),        # its document is gone: nothing to do
        oplogs.delete(ns, 98),                            # so is this one
    ])
    docs = raw_docs(client, db, "c")
    assert docs == {1: bson.encode({"_id": 1, "a": 10, "c": 3}), 2: bson.encode({"_id": 2, "whole": "document"}),
                    3: bson.encode({"_id": 3, "new": True})}
    assert r.stats.applied == {"insert": 4, "update": 3, "delete": 2}
    assert r.stats.skipped == {"update of a document a later entry deletes": 1}


def test_commands_and_the_index_catalog(coll):
    client, db, ns = coll
    client[db].untouched.insert_one({"_id": "not ours"})
    catalog = IndexCatalog()
    catalog.add_collection(db, "c", [{"v": 2, "key": {"_id": 1}, "name": "_id_"}])
    r = replay(client, [
        oplogs.command(db, {"create": "capped", "capped": True, "size": 4096, "idIndex": {"v": 2}}),
        oplogs.insert(f"{db}.capped", {"_id": 1}),
        oplogs.command(db, {"createIndexes": "c", "v": 2, "key": {"a": 1}, "name": "a_1"}),
        oplogs.command(db, {"commitIndexBuild": "c", "indexBuildUUID": bson.Binary(b"\x03" * 16, 4),
                            "indexes": [{"v": 2, "key": {"b": 1}, "name": "b_1", "unique": True},
                                        {"v": 2, "key": {"d": 1}, "name": "d_1"}]}),
        oplogs.command(db, {"startIndexBuild": "c", "indexBuildUUID": bson.Binary(b"\x03" * 16, 4)}),
        oplogs.command(db, {"dropIndexes": "c", "index": "d_1"}, o2={"v": 2, "key": {"d": 1}, "name": "d_1"}),
        oplogs.insert(ns, {"_id": 1, "a": 1, "b": 1}),
        oplogs.command(db, {"create": "gone"}),
        oplogs.insert(f"{db}.gone", {"_id": 1}),
        oplogs.command(db, {"drop": "gone"}),
        oplogs.command("admin", {"renameCollection": f"{db}.capped", "to": f"{db}.renamed", "dropTarget": False}),
        oplogs.command(db, {"emptycapped": "renamed"}),
        oplogs.command("admin", {"applyOps": [oplogs.nested("i", ns, {"_id": 2, "a": 2, "b": 2}),
                                              oplogs.nested("d", ns, {"_id": 1})]}),
        oplogs.command(db, {"dbCheck": "c"}),
    ], catalog)
    assert r.stats.applied == {"command": 8, "insert": 4, "delete": 1}   # applyOps counts as its entries
    assert r.stats.skipped == {"index build bookkeeping": 1, "dbCheck": 1}
    assert sorted(client[db].list_collection_names()) == ["c", "renamed", "untouched"]
    assert client[db].renamed.count_documents({}) == 0
    assert raw_docs(client, db, "c") == {2: bson.encode({"_id": 2, "a": 2, "b": 2})}
    # indexes are built after the replay, from the catalog the commands changed
    assert [s["name"] for s in catalog.indexes[(db, "c")]] == ["_id_", "a_1", "b_1"]
    mongo.build_indexes(client, db, "c", catalog.indexes[(db, "c")])
    info = client[db].c.index_information()
    assert set(info) == {"_id_", "a_1", "b_1"} and info["b_1"]["unique"] is True

    # dropDatabase drops what this restore owns there, never the target's other collections
    replay(client, [oplogs.command(db, {"dropDatabase": 1})], catalog)
    assert client[db].list_collection_names() == ["untouched"]


def test_transactions_apply_at_commit_and_never_when_aborted(coll):
    client, db, ns = coll
    one, two, three = b"\x11" * 16, b"\x12" * 16, b"\x13" * 16
    r = replay(client, [
        # a large transaction: partial entries, then the last one commits it
        oplogs.transaction([oplogs.nested("i", ns, {"_id": 1})], lsid=one, partialTxn=True),
        oplogs.transaction([oplogs.nested("i", ns, {"_id": 2})], lsid=one),
        # prepared, then aborted
        oplogs.transaction([oplogs.nested("i", ns, {"_id": 3})], lsid=two, prepare=True),
        oplogs.txn_command("abortTransaction", lsid=two),
        # prepared, then committed
        oplogs.transaction([oplogs.nested("i", ns, {"_id": 4})], lsid=three, prepare=True),
        oplogs.insert(ns, {"_id": 5}),
        oplogs.txn_command("commitTransaction", lsid=three),
    ])
    assert sorted(raw_docs(client, db, "c")) == [1, 2, 4, 5]
    assert r.stats.skipped == {"aborted transaction": 1}


def test_what_mongorestore_skips_is_skipped_and_counted(coll):
    client, db, ns = coll
    r = replay(client, [
        oplogs.entry("n", "", {"msg": "periodic noop"}),
        oplogs.insert("admin.system.users", {"_id": "admin.mender"}),
        oplogs.insert("config.system.sessions", {"_id": 1}),
        oplogs.insert(f"{db}.system.profile", {"_id": 1}),
        oplogs.insert("otherdb.c", {"_id": 1}),
        oplogs.entry("km", "", {"k": 1}),
        oplogs.insert(ns, {"_id": 1}),
    ], databases={db})
    assert r.stats.applied == {"insert": 1}
    assert r.stats.skipped == {"no-op": 1, "system database": 2, "system collection": 1,
                               "database not restored": 1, "internal bookkeeping": 1}
    assert "otherdb" not in client.list_database_names()


def test_replay_stops_at_the_limit_and_applies_each_entry_once(coll):
    client, db, ns = coll
    e1 = oplogs.insert(ns, {"_id": 1}, ts=Timestamp(oplogs.T0 + 10, 1))
    e2 = oplogs.insert(ns, {"_id": 2}, ts=Timestamp(oplogs.T0 + 20, 1))
    e3 = oplogs.insert(ns, {"_id": 3}, ts=Timestamp(oplogs.T0 + 30, 1))
    r = replay(client, [e1, e2, e2, e3], limit=Limit(ts=Timestamp(oplogs.T0 + 20, 1)))
    assert sorted(raw_docs(client, db, "c")) == [1, 2]
    assert r.stats.reached_limit and r.stats.skipped == {"already replayed": 1}
    assert r.stats.last.t == oplogs.T0 + 20
    when = dt.datetime.fromtimestamp(oplogs.T0 + 30, dt.timezone.utc)
    assert replay(client, [e3], limit=Limit(time=when - dt.timedelta(seconds=1))).stats.entries == 0


@pytest.mark.parametrize("bad,error,fragment", [
    (lambda ns, db: oplogs.command(db, {"frobnicate": "c"}), IntegrityError, "unknown oplog command 'frobnicate'"),
    (lambda ns, db: oplogs.entry("x", ns, {}), IntegrityError, "unknown oplog operation 'x'"),
    (lambda ns, db: oplogs.update_v2(ns, 1, {"q": {"a": 1}}), IntegrityError, "unknown section 'q'"),
    (lambda ns, db: oplogs.entry("u", ns, {"$v": 3, "x": 1}, {"_id": 1}), IntegrityError, "$v: 3"),
    # FerretDB has no convertToCapped: the server's refusal, in one line
    (lambda ns, db: oplogs.command(db, {"convertToCapped": "c", "size": 4096}), MenderBackupError,
     "replaying the oplog entry at"),
])
def test_what_cannot_be_replayed_is_one_clear_error(coll, bad, error, fragment):
    client, db, ns = coll
    client[db].c.insert_one({"_id": 1})
    with pytest.raises(error) as info:
        replay(client, [bad(ns, db)])
    assert fragment in str(info.value) and "\n" not in str(info.value)
