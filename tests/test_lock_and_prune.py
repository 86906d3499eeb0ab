"""One run at a time per destination; retention and garbage collection at a real destination."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from mender_backup.format import layout
from mender_backup.stores import S3Settings, open_store
from testenv import mender_data
from tests.cli import assert_one_line_error, result_of, run, start


@pytest.fixture
def seeded(new_mongodb, minio, bucket):
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.05)
    mender_data.seed_bucket(minio.client(), bucket, count=10)
    return mongo, bucket


def s3_env(minio, mongo, dest):
    return {**minio.env(), "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": dest}


def test_two_backups_at_once_one_runs_the_other_refuses(seeded, tmp_path):
    """Backup A is frozen (SIGSTOP) while it holds the lock; backup B, started then, must
    refuse; A, thawed, completes. Deterministic, with two real processes."""
    import signal
    import time
    mongo, _ = seeded
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    a = start("backup", "--json", env=e)
    lock = tmp_path / layout.LOCK
    deadline = time.monotonic() + 60
    while not lock.exists():
        assert a.poll() is None and time.monotonic() < deadline, "backup A ended before taking the lock"
        time.sleep(0.01)
    a.send_signal(signal.SIGSTOP)
    try:
        b = run("backup", env=e, check=False)
        assert_one_line_error(b, 4, "another run holds the lock", "backup by")
    finally:
        a.send_signal(signal.SIGCONT)
    out, err = a.communicate(timeout=120)
    assert a.returncode == 0, err
    listing = result_of(run("list", "--json", env=e))
    assert len(listing) == 1 and listing[0]["complete"]


def test_held_lock_refuses_and_stale_lock_reports_age_and_owner(seeded, minio, tmp_path):
    mongo, _ = seeded
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    store = open_store(f"file://{tmp_path}")
    fresh = {"owner": "pod-a:17", "operation": "backup", "started_at": datetime.now(timezone.utc).isoformat()}
    assert store.create_exclusive(layout.LOCK, json.dumps(fresh).encode())
    line = assert_one_line_error(run("backup", env=e, check=False), 4, "another run holds the lock", "pod-a:17")
    assert "started" in line

    store.delete([layout.LOCK])
    old = {**fresh, "started_at": (datetime.now(timezone.utc) - timedelta(hours=30)).isoformat()}
    assert store.create_exclusive(layout.LOCK, json.dumps(old).encode())
    line = assert_one_line_error(run("backup", env=e, check=False), 4, "stale lock", "pod-a:17", "30.0h", "--break-lock")
    assert not any(p.name == "manifest.json" for p in tmp_path.rglob("*"))

    r = run("backup", "--break-lock", "--json", env=e)
    assert result_of(r)["id"]
    assert not (tmp_path / layout.LOCK).exists()     # released after the run


def test_prune_applies_policy_and_removes_unreferenced_artifacts(seeded, minio):
    mongo, arts = seeded
    import uuid
    b = f"prune-{uuid.uuid4().hex[:6]}"
    s3 = minio.client()
    s3.create_bucket(Bucket=b)
    e = s3_env(minio, mongo, f"s3://{b}/p")
    e["MENDER_BACKUP_ARTIFACTS_BUCKET"] = arts
    ids = []
    for i in range(3):
        ids.append(result_of(run("backup", "--json", env=e))["id"])
        if i == 0:   # an artifact that only the first backup references
            s3.delete_object(Bucket=arts, Key=sorted(o["Key"] for o in s3.list_objects_v2(Bucket=arts)["Contents"])[0])
    # an incomplete backup from yesterday (a killed run) and a stray upload
    store = open_store(f"s3://{b}/p", S3Settings(minio.endpoint, "us-east-1", minio.access_key,
                                                  minio.secret_key, addressing_style="path"))
    stale_id = layout.new_id(datetime.now(timezone.utc) - timedelta(days=1))
    store.put_bytes(layout.backup_key(stale_id, "mongodb.archive.zst"), b"partial")

    dry = result_of(run("prune", "--keep-last", "2", "--dry-run", "--json", env=e))
    assert dry["delete"] == [ids[0]] and dry["delete_incomplete"] == [stale_id]
    assert dry["delete_artifacts"] == 1
    assert len(result_of(run("list", "--json", env=e))) == 4      # nothing deleted

    r = result_of(run("prune", "--keep-last", "2", "--json", env=e))
    assert r["delete"] == [ids[0]]
    listing = result_of(run("list", "--json", env=e))
    assert [x["id"] for x in listing] == ids[1:]
    stored = {o.key for o in store.list(layout.ARTIFACTS)}
    assert len(stored) == 9
    for bid in ids[1:]:
        run("verify", bid, env=e)      # kept backups still have every artifact they need


def test_prune_without_policy_refuses(tmp_path):
    r = run("prune", env={"MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}, check=False)
    assert_one_line_error(r, 2, "no retention policy")


def test_backup_applies_retention_from_environment(seeded, tmp_path):
    mongo, _ = seeded
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}", "MENDER_BACKUP_KEEP_LAST": "2"}
    for _ in range(3):
        run("backup", env=e)
    assert len(result_of(run("list", "--json", env=e))) == 2


def test_break_stale_lock_breaks_only_a_stale_one(seeded, tmp_path):
    """What the CronJob does: a lock older than any run can live is broken (with a warning),
    a younger one is respected."""
    mongo, _ = seeded
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}",
         "MENDER_BACKUP_BREAK_STALE_LOCK": "true", "MENDER_BACKUP_LOCK_STALE_AFTER": "3600"}
    store = open_store(f"file://{tmp_path}")
    young = {"owner": "pod-b:1", "operation": "backup",
             "started_at": (datetime.now(timezone.utc) - timedelta(minutes=30)).isoformat()}
    store.create_exclusive(layout.LOCK, json.dumps(young).encode())
    assert_one_line_error(run("backup", env=e, check=False), 4, "another run holds the lock", "pod-b:1")
    store.delete([layout.LOCK])
    old = {**young, "started_at": (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()}
    store.create_exclusive(layout.LOCK, json.dumps(old).encode())
    r = run("backup", "--json", env=e)
    assert result_of(r)["id"]
    assert any("breaking the stale lock" in ev.get("msg", "") and "pod-b:1" in ev["msg"]
               for ev in map(json.loads, r.stdout.splitlines()))


def test_sigterm_cleans_up_and_releases_the_lock(new_mongodb, tmp_path):
    """Kubernetes sends SIGTERM at activeDeadlineSeconds: the run unwinds, keeps nothing."""
    import signal
    import time
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=4)
    dest = tmp_path / "d"
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}"}
    p = start("backup", "--compression", "none", "--parallel", "1", env=e)
    deadline = time.monotonic() + 60
    while not [f for f in dest.rglob("*.partial") if f.stat().st_size > 0]:
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    assert_one_line_error(r, 143, "terminated")
    assert not (dest / layout.LOCK).exists()
    assert not list(dest.rglob("*.partial")) and not list(dest.rglob("mongodb.archive*"))
    assert not list(dest.rglob("manifest.json"))
