"""The test environment itself: each real server or tool answers."""

from __future__ import annotations

import datetime as dt
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


def test_mongodump_archive_from_ferretdb(ferretdb, mongodump, dbname, tmp_path):
    ferretdb.client()[dbname].c.insert_many([{"i": i} for i in range(10)])
    out = tmp_path / "dump.archive"
    subprocess.run([mongodump, f"--uri={ferretdb.url}", f"--db={dbname}", f"--archive={out}"],
                   check=True, capture_output=True)
    assert out.stat().st_size > 100
    assert out.read_bytes()[:4] == bytes.fromhex("6de29981")
