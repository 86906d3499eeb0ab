"""SIGTERM (a Job's deadline, an eviction) and SIGINT (Ctrl-C) at the moments that matter,
sent to the real `mender-backup` process: exit 143 / 130, one `error:` line, no
traceback, the lock released, nothing half-written left behind (no `.partial` file,
no multipart upload, no manifest), and the process gone within seconds, its worker
threads stopped. Each moment is reached by polling what the run leaves behind (a file,
a multipart upload, a lock object, the proxy's counters), never by a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mender_backup import signals
from mender_backup.errors import Terminated
from mender_backup.format import layout
from testenv import mender_data, servers
from tests.cli import assert_one_line_error, result_of, run, start
from tests.faults import TcpProxy
from tests.test_faults import wait_until
from tests.test_redact import webhook  # noqa: F401  (the fixture: a local server recording the webhook's posts)

SIGNALS = [pytest.param(signal.SIGTERM, 143, "terminated (SIGTERM)", id="SIGTERM"),
           pytest.param(signal.SIGINT, 130, "interrupted (SIGINT)", id="SIGINT")]


def stopped(proc: subprocess.Popen, sig: int, code: int, *fragments: str) -> subprocess.CompletedProcess:
    """Send `sig`; the process must be gone within 60 s with exit `code` and one error line."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_one_line_error(r, code, *fragments)
    return r


def s3_keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(s3, bucket: str) -> list:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A DocumentDB of this module's own with ~10 MB of BSON: a dump or restore is caught in the middle."""
    from tests.conftest import _need_documentdb
    _need_documentdb()
    server = servers.start_documentdb(tmp_path_factory.mktemp("signals-src"))
    mender_data.seed_mongo(server.client(), scale=6)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backup_dir(source, tmp_path_factory):
    dest = tmp_path_factory.mktemp("signals-backups")
    bid = result_of(run("backup", "--json", "--compression", "none",
                        env={"MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}"}))["id"]
    return dest, bid


@pytest.fixture
def slow_s3(minio):
    proxy = TcpProxy(int(minio.endpoint.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()


# ------------------------------------------------------------------ backup


@pytest.mark.parametrize("sig,code,said", SIGNALS)
def test_signal_during_the_dump(source, tmp_path, webhook, sig, code, said):  # noqa: F811
    server, posts = webhook
    dest = tmp_path / "dest"
    proc = start("backup", "--compression", "none", "--parallel", "2",
                 env={"MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}",
                      "MENDER_BACKUP_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook"})
    wait_until(lambda: [p for p in dest.rglob("*.partial") if p.stat().st_size >= 1 << 20], proc,
               "the archive was 1 MiB in")
    stopped(proc, sig, code, said, "nothing was kept")
    assert not (dest / layout.LOCK).exists()
    assert not list(dest.rglob("*.partial")) and not list(dest.rglob("mongodb.archive*"))
    assert not list(dest.rglob("manifest.json"))
    assert len(posts) == 1 and f"(exit {code}): {said}" in posts[0].decode()      # the failure was notified


@pytest.mark.parametrize("sig,code,said", SIGNALS)
def test_signal_during_an_s3_upload(source, minio, bucket, slow_s3, sig, code, said):
    s3 = minio.client()
    slow_s3.delay = 0.02           # per 64 KiB forwarded: the upload, not the dump, sets the pace
    e = {**minio.env(), "AWS_ENDPOINT_URL": slow_s3.endpoint, "MONGODB_URL": source.url,
         "MENDER_BACKUP_DESTINATION": f"s3://{bucket}/x", "MENDER_BACKUP_S3_PART_SIZE": str(5 << 20)}
    proc = start("backup", "--compression", "none", "--parallel", "1", "--json", env=e)
    wait_until(lambda: uploads(s3, bucket), proc, "a multipart upload began")
    sent = slow_s3.answered
    wait_until(lambda: slow_s3.answered > sent, proc, "S3 answered again (a part under way)")
    stopped(proc, sig, code, said, "nothing was kept")
    assert uploads(s3, bucket) == []                    # this run's upload aborted
    assert s3_keys(s3, bucket) == []                    # no archive, no manifest, no lock


def test_a_signal_as_the_service_creates_the_upload_leaves_none(minio, bucket):
    """The window the test above can hit only by chance: MinIO has created the upload, its
    answer (the only place the id is) has not reached us when `Terminated` is raised. The
    real client and service; only the moment of the signal is forced."""
    from mender_backup.stores import open_store
    from tests.test_lock_and_prune import minio_access

    store = open_store(f"s3://{bucket}/x", minio_access(minio, part_size=5 << 20))
    client = store.client
    create = client.create_multipart_upload

    def created_then_signalled(**kw):
        create(**kw)
        raise Terminated(signal.SIGTERM)

    client.create_multipart_upload = created_then_signalled
    with pytest.raises(Terminated):
        with store.open_write("backups/b1/mongodb.archive") as w:
            w.write(b"\0" * (6 << 20))
    assert uploads(minio.client(), bucket) == []


@pytest.mark.parametrize("sig,code,said", SIGNALS[:1])
def test_signal_while_artifact_threads_copy(mongodb, dbname, minio, bucket, slow_s3, sig, code, said):
    """The copies run in 16 worker threads, which never see the signal: they stop at their
    next MiB and abort their uploads, and the process does not wait for the rest."""
    mongodb.client()[dbname].c.insert_many([{"i": i} for i in range(100)])
    s3 = minio.client()
    source_bucket = f"{bucket}-src"
    mender_data.seed_bucket(s3, source_bucket, count=60)
    slow_s3.delay = 0.02
    # the destination on "another service" (the proxy): artifacts are streamed through our threads
    e = {**minio.env(), "MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"s3://{bucket}/x",
         "MENDER_BACKUP_ARTIFACTS_BUCKET": source_bucket, "MENDER_BACKUP_DEST_AWS_ENDPOINT_URL": slow_s3.endpoint,
         "MENDER_BACKUP_S3_PART_SIZE": str(5 << 20)}
    proc = start("backup", "--db", dbname, "--json", env=e)
    wait_until(lambda: any("/artifacts/" in k for k in s3_keys(s3, bucket)), proc, "the first artifact was copied")
    began = time.monotonic()
    stopped(proc, sig, code, said)
    assert time.monotonic() - began < 30
    assert uploads(s3, bucket) == []
    keys = s3_keys(s3, bucket)
    assert not any(k.endswith(("manifest.json", ".lock")) or "mongodb.archive" in k for k in keys), keys
    assert len([k for k in keys if "/artifacts/" in k]) < 60          # stopped part way through the copies


# ------------------------------------------------------------------ restore, prune, list


@pytest.mark.parametrize("sig,code,said", SIGNALS)
def test_signal_during_a_restore(backup_dir, new_mongodb, sig, code, said):
    dest, bid = backup_dir
    target = new_mongodb()
    client = target.client()

    def documents_arrived() -> bool:
        for db in client.list_database_names():
            if db not in ("admin", "local", "config"):
                if any(client[db][c].estimated_document_count() for c in client[db].list_collection_names()):
                    return True
        return False

    proc = start("restore", bid, env={"MENDER_BACKUP_DESTINATION": f"file://{dest}",
                                      "MENDER_BACKUP_RESTORE_MONGODB_URL": target.url})
    wait_until(documents_arrived, proc, "the first documents were restored")
    stopped(proc, sig, code, said, "the restore stopped part way")
    assert not list(dest.rglob("*.partial"))


@pytest.fixture
def three_backups(mongodb, dbname, minio, bucket):
    mongodb.client()[dbname].c.insert_many([{"i": i} for i in range(50)])
    e = {**minio.env(), "MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"s3://{bucket}/p"}
    for _ in range(3):
        run("backup", "--db", dbname, env=e)
    return e


@pytest.mark.parametrize("sig,code,said", SIGNALS)
def test_signal_during_prune(three_backups, minio, bucket, slow_s3, sig, code, said):
    s3 = minio.client()
    slow_s3.delay = 0.3
    lock = f"p/{layout.LOCK}"
    proc = start("prune", "--keep-last", "1", env={**three_backups, "AWS_ENDPOINT_URL": slow_s3.endpoint})
    wait_until(lambda: lock in s3_keys(s3, bucket), proc, "prune took the lock")
    stopped(proc, sig, code, said, "lock released")
    assert lock not in s3_keys(s3, bucket)
    assert uploads(s3, bucket) == []


@pytest.mark.parametrize("sig,code,said", SIGNALS)
def test_signal_during_list_on_s3(three_backups, slow_s3, sig, code, said):
    slow_s3.delay = 0.3
    proc = start("list", "--json", env={**three_backups, "AWS_ENDPOINT_URL": slow_s3.endpoint})
    wait_until(lambda: slow_s3.connections >= 1 and slow_s3.answered > 0, proc, "S3 answered a request")
    r = stopped(proc, sig, code, said)
    assert r.stdout == ""         # no result, no half a table


# ------------------------------------------------------------------ without servers


def test_terminated_passes_every_except_exception_and_a_second_signal_waits():
    before = {s: signal.getsignal(s) for s in signals.HANDLED}
    try:
        signals.install()
        with pytest.raises(Terminated) as info:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except Exception:                       # what a retry loop or a listing does
                pytest.fail("Terminated was caught as an Exception")
        assert (info.value.exit_code, str(info.value)) == (143, "terminated (SIGTERM)")
        os.kill(os.getpid(), signal.SIGINT)         # while the first unwinds: ignored
        time.sleep(0.1)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


@pytest.mark.parametrize("sig,code,said", SIGNALS)
def test_helm_plugin_exits_with_the_signal_code(sig, code, said):
    """The plugin's entry point: one `Error:` line (its prefix for every error), no traceback."""
    program = textwrap.dedent("""
        import sys, time
        from mender_backup.helm import plugin

        @plugin.app.command()
        def wait() -> None:
            print("ready", flush=True)
            while True:
                try:
                    time.sleep(0.01)
                except Exception:       # swallows everything an Exception can be
                    pass

        sys.argv = ["helm-mender-backup", "wait"]
        plugin.main()
    """)
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert err.strip() == f"Error: {said}" and "Traceback" not in out + err
