"""Interop with the real mongo-tools (built from ../shared/mongo-tools by `make test-env`):
our archives restored by the real mongorestore, the real mongodump's archives (plain, xz,
gzip, --oplog) restored and verified by us. A missing tool fails under CI (conftest)."""

from __future__ import annotations

import json
import subprocess

import pytest
import zstandard
from bson import Timestamp, json_util

from mender_backup.format.archive import ArchiveReader
from testenv import mender_data
from tests import writer
from tests.cli import result_of, run
from tests.test_backup_restore import snapshot


def docs_of(snap: dict) -> dict:
    return {ns: v["docs"] for ns, v in snap.items()}


def test_our_archive_restored_by_the_real_mongorestore(mongorestore, new_ferretdb, tmp_path):
    """mongorestore always adds `ns` to the index specs it builds, which FerretDB v1 refuses
    (`Index option "ns" is unknown`; MongoDB accepts it): documents are restored by it with
    --noIndexRestore, and the indexes it would build are checked in the archive's metadata."""
    src, target = new_ferretdb(), new_ferretdb()
    mender_data.seed_mongo(src.client(), scale=0.1)
    e = {"MONGODB_URL": src.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}/b"}
    bid = result_of(run("backup", "--json", env=e))["id"]
    plain = tmp_path / "plain.archive"
    with open(tmp_path / "b" / "backups" / bid / "mongodb.archive.zst", "rb") as f, open(plain, "wb") as out:
        zstandard.ZstdDecompressor().copy_stream(f, out)
    r = subprocess.run([mongorestore, f"--uri={target.url}", f"--archive={plain}", "--noIndexRestore"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert docs_of(snapshot(target.client())) == docs_of(snapshot(src.client()))

    with open(plain, "rb") as f:
        prelude = ArchiveReader(f).prelude
    source = src.client()
    for cm in prelude.collections:
        indexes = json_util.loads(cm.metadata)["indexes"]
        want = [{k: v for k, v in i.items() if k != "ns"} for i in source[cm.db][cm.collection].list_indexes()]
        assert sorted(indexes, key=lambda i: i["name"]) == sorted(want, key=lambda i: i["name"]), cm.namespace


@pytest.mark.parametrize("packer", ["plain", "xz", "gzip"])
def test_real_mongodump_archive_restored_by_us(packer, mongodump, new_ferretdb, tmp_path):
    src, target = new_ferretdb(), new_ferretdb()
    mender_data.seed_mongo(src.client(), scale=0.1)
    path = tmp_path / {"plain": "dump.archive", "xz": "dump.archive.xz", "gzip": "dump.archive.gz"}[packer]
    dump = subprocess.Popen([mongodump, f"--uri={src.url}", "--archive"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    with open(path, "wb") as out:
        if packer == "plain":
            out.write(dump.stdout.read())
        else:
            subprocess.run([packer, "-c"], stdin=dump.stdout, stdout=out, check=True)
    assert dump.wait() == 0
    r = run("restore", "--archive", f"file://{path}", "--json", env={"MONGODB_URL": target.url})
    res = result_of(r)
    assert res["verified"] is True and res["oplog"]["in_archive"] is False
    assert snapshot(target.client()) == snapshot(src.client())


def test_real_mongodump_oplog_archive_replayed_by_us(mongodump, new_replica_set, new_ferretdb, tmp_path):
    """mongodump --oplog of a replica set under writes: restored without the replay, it is
    reported as not replayed; with --oplog-replay, the target is the source at the archive's
    last oplog entry (mongodump's consistency point)."""
    src = new_replica_set()
    mender_data.seed_mongo(src.client(), scale=1)
    path = tmp_path / "dump.archive.gz"
    with writer.Writer(src.client()):
        subprocess.run([mongodump, f"--uri={src.url}", "--oplog", "--gzip", f"--archive={path}"], check=True,
                       capture_output=True)
    mender_before = {k: v for k, v in snapshot(src.client()).items() if not k.startswith("pairs_")}

    plain = new_ferretdb()
    res = result_of(run("restore", "--archive", f"file://{path}", "--json", env={"MONGODB_URL": plain.url}))
    assert res["oplog"] == {"in_archive": True, "replay": False, "slices": [],
                            "reason": "not replayed (mongodump --oplog archive): add --oplog-replay to replay it",
                            "replayed": None}

    target = new_ferretdb()
    res = result_of(run("restore", "--archive", f"file://{path}", "--oplog-replay", "--json",
                        env={"MONGODB_URL": target.url}))
    replayed = res["oplog"]["replayed"]
    assert res["verified"] is True and replayed["entries"] > 10, replayed
    end = replayed["last"]
    n = writer.writes_until(src.client(), Timestamp(end["t"], end["i"]))
    restored = writer.state(target.client())
    assert writer.pairs_consistent(restored) and restored == writer.expected(n)
    assert {k: v for k, v in snapshot(target.client()).items() if not k.startswith("pairs_")} == mender_before
    assert json.dumps(res)   # JSON all the way


def test_real_mongodump_full_dump_with_admin_restores_the_data_only(mongodump, new_ferretdb, tmp_path):
    """A full dump of a server with authentication holds admin.system.users (FerretDB keeps its
    users there): listed as skipped, never written to the target; the option that would merge
    them is refused by a target that cannot (FerretDB has no _mergeAuthzCollections)."""
    src = new_ferretdb(user="root", password="root-Pw-4411")
    mender_data.seed_mongo(src.client(), scale=0.05)
    path = tmp_path / "full.archive"
    subprocess.run([mongodump, f"--uri={src.url}", f"--archive={path}"], check=True, capture_output=True)
    target = new_ferretdb()
    admin_before = sorted(target.client().admin.list_collection_names())

    r = run("restore", "--archive", f"file://{path}", "--json", env={"MONGODB_URL": target.url})
    res = result_of(r)
    assert res["verified"] is True
    assert res["skipped"] == [{"namespace": "admin.system.users",
                               "reason": "users and roles: restored only with --restore-users-and-roles"}]
    assert sorted(target.client().admin.list_collection_names()) == admin_before
    assert docs_of(snapshot(target.client())) == docs_of(snapshot(src.client()))

    other = new_ferretdb()
    r = run("restore", "--archive", f"file://{path}", "--restore-users-and-roles", env={"MONGODB_URL": other.url},
            check=False)
    assert r.returncode == 1 and "cannot restore users and roles" in r.stderr
    assert set(other.client().list_database_names()) <= {"admin", "local", "config"}
