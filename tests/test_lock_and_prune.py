"""One run at a time per destination; retention and garbage collection at a real destination."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from mender_backup.engine.lock import Lock
from mender_backup.errors import ConflictError

from mender_backup.format import layout
from mender_backup.stores import AzureSettings, S3Settings, StoreAccess, open_store
from testenv import mender_data
from tests.cli import assert_one_line_error, json_events, result_of, run, start


@pytest.fixture
def seeded(new_mongodb, minio, bucket):
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.05)
    mender_data.seed_bucket(minio.client(), bucket, count=10)
    return mongo, bucket


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


def lock_body(host: str, pid: int, refreshed_ago: timedelta, started_ago: timedelta | None = None,
              pid_namespace: str | None = None) -> bytes:
    """A lock as another run wrote it; by default in this process's PID namespace."""
    now = datetime.now(timezone.utc)
    body = {"owner": f"{host}:{pid}", "host": host, "pid": pid, "operation": "backup",
            "started_at": (now - (started_ago or refreshed_ago)).isoformat(),
            "refreshed_at": (now - refreshed_ago).isoformat(), "token": "theirs",
            "pid_namespace": os.readlink("/proc/self/ns/pid") if pid_namespace is None else pid_namespace}
    if pid_namespace == "":
        del body["pid_namespace"]            # as versions before it wrote their locks
    return json.dumps(body).encode()


def test_live_lock_refuses_naming_its_holder(seeded, tmp_path):
    mongo, _ = seeded
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    store = open_store(f"file://{tmp_path}", StoreAccess())
    # ages the message rounds to whole minutes / tenths of hours, so the seconds the run
    # itself takes (a loaded CI machine) cannot change what it prints
    assert store.create_exclusive(layout.LOCK, lock_body("pod-a", 17, timedelta(minutes=5), timedelta(hours=3)))
    line = assert_one_line_error(run("backup", env=e, check=False), 4, "another run holds the lock",
                                 "pod-a:17", "started 3.0h ago", "refreshed 5m ago", "--break-lock")
    assert "Traceback" not in line
    assert not list(tmp_path.rglob("manifest.json"))

    r = run("backup", "--break-lock", "--json", env=e)        # the operator says it is dead
    assert result_of(r)["id"]
    assert any("breaking the lock" in ev.get("msg", "") for ev in json_events(r))
    assert not (tmp_path / layout.LOCK).exists()     # released after the run


def test_lock_not_refreshed_is_stale_and_taken_over(seeded, tmp_path):
    """A holder refreshes its lock every minute; one silent for longer than the stale time
    (10 minutes by default) is dead: the next run takes the lock over with a warning."""
    mongo, _ = seeded
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    store = open_store(f"file://{tmp_path}", StoreAccess())
    store.create_exclusive(layout.LOCK, lock_body("pod-b", 1, timedelta(minutes=5)))
    assert_one_line_error(run("backup", env=e, check=False), 4, "another run holds the lock", "pod-b:1")
    r = run("backup", "--json", env={**e, "MENDER_BACKUP_LOCK_STALE_AFTER": "120"})
    assert result_of(r)["id"]
    warning = [ev["msg"] for ev in json_events(r) if ev["event"] == "warning" and "lock" in ev["msg"]]
    assert len(warning) == 1 and "breaking the stale lock" in warning[0] and "pod-b:1" in warning[0]
    assert "not refreshed for 5m" in warning[0]


def test_lock_of_a_dead_process_on_this_host_is_stale_at_once(seeded, tmp_path):
    mongo, _ = seeded
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    dead = subprocess.Popen(["true"])
    dead.wait()
    store = open_store(f"file://{tmp_path}", StoreAccess())
    store.create_exclusive(layout.LOCK, lock_body(socket.gethostname(), dead.pid, timedelta(seconds=1)))
    r = run("backup", "--json", env=e)
    warning = [ev["msg"] for ev in json_events(r) if ev["event"] == "warning" and "lock" in ev["msg"]]
    assert len(warning) == 1 and f"its process {dead.pid} on this host is gone" in warning[0]
    # a live process on this host is respected
    store.create_exclusive(layout.LOCK, lock_body(socket.gethostname(), os.getpid(), timedelta(seconds=1)))
    assert_one_line_error(run("backup", env=e, check=False), 4, f"{socket.gethostname()}:{os.getpid()}")
    # so is a PID seen from another PID namespace (another pod on this node, under hostNetwork),
    # or from an older lock that does not say which: its age alone can make it stale
    for ns in ("pid:[4026530000]", ""):
        store.delete([layout.LOCK])
        store.create_exclusive(layout.LOCK, lock_body(socket.gethostname(), dead.pid, timedelta(seconds=1),
                                                      pid_namespace=ns))
        assert_one_line_error(run("backup", env=e, check=False), 4, f"{socket.gethostname()}:{dead.pid}")


def minio_access(minio, **more) -> StoreAccess:
    return StoreAccess(s3=S3Settings(minio.endpoint, "us-east-1", minio.access_key, minio.secret_key,
                                     addressing_style="path", **more))


def azurite_access(azurite) -> StoreAccess:
    return StoreAccess(azure=AzureSettings(account_key=azurite.key, blob_endpoint=azurite.endpoint))


def remote_destination(kind: str, request) -> tuple[str, dict[str, str], StoreAccess]:
    """A fresh destination at MinIO, SeaweedFS or Azurite: (url, the tool's env, the access to open it here)."""
    if kind in ("s3", "seaweedfs"):
        minio, bucket = request.getfixturevalue("minio" if kind == "s3" else kind), f"dest-{uuid.uuid4().hex[:10]}"
        minio.client().create_bucket(Bucket=bucket)
        return f"s3://{bucket}/p", minio.env(), minio_access(minio)
    azurite, container = request.getfixturevalue("azurite"), request.getfixturevalue("container")
    return azurite.url(container, "p"), azurite.env(), azurite_access(azurite)


@pytest.fixture(params=["file", "s3", "seaweedfs", "azure"])
def lock_store(request, tmp_path):
    if request.param == "file":
        return open_store(f"file://{tmp_path}", StoreAccess())
    url, _, access = remote_destination(request.param, request)
    return open_store(url, access)


def test_the_store_creates_a_lock_once_whoever_asks(lock_store):
    """The conditional write the lock stands on (O_EXCL, If-None-Match: *, overwrite=False):
    a second create of the same key fails and leaves the first one's body; a service that
    ignored the condition would let two runs hold the lock."""
    assert lock_store.create_exclusive(layout.LOCK, lock_body("pod-a", 1, timedelta(0)))
    assert not lock_store.create_exclusive(layout.LOCK, lock_body("pod-b", 2, timedelta(0)))
    assert Lock(lock_store, "x").read().owner == "pod-a:1"
    with pytest.raises(ConflictError, match="another run holds the lock"):
        Lock(lock_store, "backup", "b2").acquire()


def test_heartbeat_refreshes_the_lock(lock_store):
    with Lock(lock_store, "backup", "b1", stale_after=4.0, refresh_every=0.2) as lock:
        lock.acquire()
        first = Lock(lock_store, "x").read()
        deadline = time.monotonic() + 5      # a refresh every 0.2 s: waits for the first one only
        while (later := Lock(lock_store, "x").read()).refreshed_at == first.refreshed_at:
            assert time.monotonic() < deadline, "the heartbeat never refreshed the lock"
            time.sleep(0.02)
        assert later.token == first.token and later.refreshed_at > first.refreshed_at
        assert later.started_at == first.started_at
        lock.ensure_held()
    assert Lock(lock_store, "x").read() is None


def test_a_run_that_lost_its_lock_cannot_commit(lock_store):
    """Another run took the lock over (ours looked stale to it): our heartbeat notices,
    and the commit check fails; our release leaves the other run's lock alone."""
    with Lock(lock_store, "backup", "b1", stale_after=4.0, refresh_every=0.2) as lock:
        lock.acquire()
        lock_store.replace(layout.LOCK, lock_body("pod-c", 9, timedelta(0)))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                lock.ensure_held()
            except ConflictError as exc:
                assert "lost the lock" in str(exc) and "pod-c:9" in str(exc)
                break
            time.sleep(0.05)
        else:
            pytest.fail("the heartbeat did not notice that the lock was taken over")
    assert Lock(lock_store, "x").read().owner == "pod-c:9"


@pytest.mark.parametrize("kind", ["s3", "seaweedfs", "azure"])
def test_prune_applies_policy_and_removes_unreferenced_artifacts(seeded, minio, kind, request):
    mongo, arts = seeded
    url, dest_env, access = remote_destination(kind, request)
    s3 = minio.client()
    e = {**minio.env(), **{f"MENDER_BACKUP_DEST_{k}": v for k, v in dest_env.items()}, "MONGODB_URL": mongo.url,
         "MENDER_BACKUP_DESTINATION": url, "MENDER_BACKUP_ARTIFACTS_BUCKET": arts}
    ids = []
    for i in range(3):
        ids.append(result_of(run("backup", "--json", env=e))["id"])
        if i == 0:   # an artifact that only the first backup references
            s3.delete_object(Bucket=arts, Key=sorted(o["Key"] for o in s3.list_objects_v2(Bucket=arts)["Contents"])[0])
    # an incomplete backup from yesterday (a killed run) and a stray upload
    store = open_store(url, access)
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


def test_a_backup_dated_a_year_ahead_does_not_make_retention_delete_new_ones(new_mongodb, tmp_path):
    """A clock a year ahead once: that backup is flagged in `list`, kept, not counted; each new
    backup with --keep-last 1 is kept (it used to be deleted right after it was written)."""
    import shutil
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.01)
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    real = result_of(run("backup", "--json", env=e))["id"]
    ahead = datetime.now(timezone.utc) + timedelta(days=365)
    future = layout.new_id(ahead)
    shutil.copytree(tmp_path / "backups" / real, tmp_path / "backups" / future)
    m = json.loads((tmp_path / "backups" / future / "manifest.json").read_text())
    m.update(id=future, created_at=ahead.isoformat(), finished_at=ahead.isoformat())
    (tmp_path / "backups" / future / "manifest.json").write_text(json.dumps(m))

    newest = [result_of(run("backup", "--keep-last", "1", "--json", env=e))["id"] for _ in range(2)][-1]
    rows = {r["id"]: r for r in result_of(run("list", "--json", env=e))}
    assert set(rows) == {future, newest}
    assert rows[future]["future"] is True and "dated" in rows[future]["problem"]
    assert rows[newest]["future"] is False
    run("verify", "latest", "--deep", env=e)        # `latest` is the newest real one
    assert result_of(run("verify", "latest", "--json", env=e))["id"] == newest
