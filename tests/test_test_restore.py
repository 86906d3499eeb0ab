"""The scheduled test restore, `mender-backup verify --restore-into URL`, against the suite's MongoDB (DocumentDB) and
MinIO: a good backup restores into scratch databases, verifies, and everything it made is
dropped; a corrupted one (a flipped byte, or contents that no longer match the manifest,
which checksums alone do not see) fails with exit 5 and still leaves nothing behind; the
verdict is recorded next to the backup, and retention keeps the newest backup that passed."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from mender_backup.format.encryption import Key
from testenv import mender_data
from tests.cli import assert_one_line_error, result_of, run
from tests.test_backup_restore import SYSTEM, bucket_contents
from tests.test_metrics import group

KEY = Key(hashlib.sha256(b"test restore key").digest())


@pytest.fixture
def setup(new_mongodb, minio, bucket):
    source = new_mongodb()
    mender_data.seed_mongo(source.client(), scale=0.1)
    mender_data.seed_bucket(minio.client(), bucket, count=5)
    scratch = new_mongodb()
    scratch.client()["someone_elses"].things.insert_one({"_id": 1})       # must survive untouched
    dest, scratch_bucket = (f"mbv-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for b in (dest, scratch_bucket):
        minio.client().create_bucket(Bucket=b)
    env = {**minio.env(), "MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": f"s3://{dest}/m",
           "MENDER_BACKUP_ARTIFACTS_BUCKET": bucket, "MENDER_BACKUP_ENCRYPTION_KEY": KEY.to_base64(),
           "MENDER_BACKUP_VERIFY_MONGODB_URL": scratch.url, "MENDER_BACKUP_VERIFY_ARTIFACTS_BUCKET": scratch_bucket}
    return {"source": source, "scratch": scratch, "dest": dest, "scratch_bucket": scratch_bucket, "env": env}


def left_behind(s) -> list[str]:
    return sorted(set(s["scratch"].client().list_database_names()) - SYSTEM - {"someone_elses"})


def verdict(minio, s, bid: str) -> dict:
    return json.loads(minio.client().get_object(Bucket=s["dest"], Key=f"m/backups/{bid}/verified.json")["Body"].read())


def test_a_good_backup_passes_and_nothing_is_left(setup, minio, pushgateway):
    s = setup
    e = {**s["env"], "MENDER_BACKUP_PUSHGATEWAY_URL": pushgateway.url}
    backup = result_of(run("backup", "--json", env=e))
    r = run("verify", "latest", "--json", env=e)                  # the URL from the environment
    out = result_of(r)
    assert out["result"] == "passed" and out["id"] == backup["id"]
    assert out["documents"] == backup["documents"] and out["artifacts_checked"] == 5
    assert out["scratch_prefix"].startswith("mbv_") and out["recorded"] is True
    assert left_behind(s) == []
    assert s["scratch"].client()["someone_elses"].things.count_documents({}) == 1
    assert bucket_contents(minio.client(), s["scratch_bucket"]) == {}
    v = verdict(minio, s, backup["id"])
    assert v["result"] == "passed" and v["documents"] == backup["documents"]
    row = [x for x in result_of(run("list", "--json", env=e)) if x["id"] == backup["id"]][0]
    assert row["verified"]["result"] == "passed"
    m = group(pushgateway, "verify", f"s3://{s['dest']}/m")
    assert m["mender_backup_last_run_success"] == 1 and m["mender_backup_last_success_documents"] == out["documents"]
    human = run("verify", "latest", env=e).stdout
    assert f"test restore of backup {backup['id']} passed" in human and "scratch databases dropped" in human


def test_a_corrupted_backup_fails_with_exit_5_and_nothing_is_left(setup, minio):
    s = setup
    bid = result_of(run("backup", "--json", env=s["env"]))["id"]
    s3 = minio.client()
    key = f"m/backups/{bid}/mongodb.archive.zst.enc"
    body = bytearray(s3.get_object(Bucket=s["dest"], Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x40
    s3.put_object(Bucket=s["dest"], Key=key, Body=bytes(body))
    r = run("verify", bid, env=s["env"], check=False)
    assert_one_line_error(r, 5, "corrupt")
    assert left_behind(s) == []
    v = verdict(minio, s, bid)
    assert v["result"] == "failed" and "corrupt" in v["error"]
    row = [x for x in result_of(run("list", "--json", env=s["env"])) if x["id"] == bid][0]
    assert row["verified"]["result"] == "failed"


def test_contents_that_no_longer_match_are_found_only_by_restoring(setup, minio):
    """The archive intact (checksums pass), but what it restores is not what the manifest
    says: a plain verify cannot see it, the test restore does, and drops what it made."""
    s = setup
    bid = result_of(run("backup", "--json", env=s["env"]))["id"]
    s3 = minio.client()
    mkey = f"m/backups/{bid}/manifest.json"
    m = json.loads(s3.get_object(Bucket=s["dest"], Key=mkey)["Body"].read())
    m["databases"]["inventory"]["devices"]["digest"] = "0" * 32
    s3.put_object(Bucket=s["dest"], Key=mkey, Body=json.dumps(m).encode())
    plain = {k: v for k, v in s["env"].items() if not k.startswith("MENDER_BACKUP_VERIFY_")}
    run("verify", bid, env=plain)                                  # checksums: fine
    r = run("verify", bid, env=s["env"], check=False)
    assert_one_line_error(r, 5, "inventory.devices: content digest differs")
    assert left_behind(s) == []                                    # dropped after a failure mid-way


def test_retention_keeps_the_newest_backup_that_passed(setup, minio):
    s = setup
    ids = [result_of(run("backup", "--json", env=s["env"]))["id"] for _ in range(3)]
    run("verify", ids[0], env=s["env"])                            # the oldest passes a test restore
    r = result_of(run("prune", "--keep-last", "1", "--json", env=s["env"]))
    assert r["keep"] == {ids[0]: ["newest verified"], ids[2]: ["last"]}
    assert r["delete"] == [ids[1]]
    run("verify", ids[2], env=s["env"])                            # a newer one passes: the old one may go
    r = result_of(run("prune", "--keep-last", "1", "--json", env=s["env"]))
    assert r["keep"] == {ids[2]: ["last", "newest verified"]} and r["delete"] == [ids[0]]
