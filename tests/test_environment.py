"""The test environment itself: each real server or tool answers."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import bson
from bson import Int64, ObjectId


def test_ferretdb_stores_and_returns_documents(ferretdb, dbname):
    client = ferretdb.client()
    doc = {"_id": ObjectId(), "name": "device-1", "n": Int64(2**40), "bin": b"\x00\x01\xff",
           "when": dt.datetime(2026, 1, 2, 3, 4, 5, 678000), "nested": {"list": [1, "two", {"three": 3.0}]}}
    client[dbname].things.insert_one(doc)
    back = client[dbname].things.find_one({"_id": doc["_id"]})
    assert back == doc
    assert client[dbname].things.count_documents({}) == 1
    client.drop_database(dbname)


def test_ferretdb_keeps_field_order_of_raw_documents(ferretdb, dbname):
    """Our digests hash raw BSON, so the server must hand back the bytes we stored."""
    from bson.raw_bson import RawBSONDocument

    raw = bson.encode({"_id": "a", "z": 1, "a": {"y": 2, "b": [3, 4]}, "m": "x"})
    coll = ferretdb.client(document_class=RawBSONDocument)[dbname].c
    coll.insert_one(RawBSONDocument(raw))
    assert coll.find_one().raw == raw
    ferretdb.client().drop_database(dbname)


def test_minio_puts_and_gets_an_object(minio, bucket):
    s3 = minio.client()
    s3.put_object(Bucket=bucket, Key="artifacts/a.mender", Body=b"mender artifact bytes")
    assert s3.get_object(Bucket=bucket, Key="artifacts/a.mender")["Body"].read() == b"mender artifact bytes"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["artifacts/a.mender"]


def test_helm_versions(helm3, helm4):
    v3 = subprocess.run([helm3, "version", "--short"], capture_output=True, text=True, check=True).stdout
    v4 = subprocess.run([helm4, "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert v3.startswith("v3."), v3
    assert v4.startswith("v4."), v4


def test_documentdb_has_mongodb_semantics(mongodb, dbname):
    """What FerretDB v1 refuses and the suite's MongoDB must do (tests/ENVIRONMENT.md)."""
    from bson.decimal128 import Decimal128
    coll = mongodb.client()[dbname].c
    coll.insert_one({"_id": 1, "price": Decimal128("12.50"), "provides": {"rootfs-image.version": "v1"}})
    coll.create_index("exp", expireAfterSeconds=3600)
    coll.create_index("status", partialFilterExpression={"status": "pending"})
    coll.create_index([("name", "text")])
    back = coll.find_one({"_id": 1})
    assert back["price"] == Decimal128("12.50") and back["provides"] == {"rootfs-image.version": "v1"}
    names = {i["name"]: i for i in coll.list_indexes()}
    assert names["exp_1"]["expireAfterSeconds"] == 3600
    assert names["status_1"]["partialFilterExpression"] == {"status": "pending"}
    assert "name_text" in names
    mongodb.client().drop_database(dbname)


def test_mongodump_archive_and_bsondump(mongodb, mongodump, bsondump, dbname, tmp_path):
    """The real MongoDB Database Tools, built from ../shared/mongo-tools."""
    mongodb.client()[dbname].c.insert_many([{"i": i} for i in range(10)])
    out = tmp_path / "dump.archive"
    subprocess.run([mongodump, f"--uri={mongodb.url}", f"--db={dbname}", f"--archive={out}"],
                   check=True, capture_output=True)
    assert out.read_bytes()[:4] == bytes.fromhex("6de29981")
    subprocess.run([mongodump, f"--uri={mongodb.url}", f"--db={dbname}", f"--out={tmp_path / 'dir'}"],
                   check=True, capture_output=True)
    r = subprocess.run([bsondump, str(tmp_path / "dir" / dbname / "c.bson")], capture_output=True, text=True, check=True)
    assert sorted(json.loads(line)["i"]["$numberInt"] for line in r.stdout.splitlines()) == [str(i) for i in range(10)]
    mongodb.client().drop_database(dbname)
