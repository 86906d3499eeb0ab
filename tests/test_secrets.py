"""Secrets never reach logs, JSON output, manifests or process arguments."""

from __future__ import annotations

import threading
import time

import psutil

from mender_backup.redact import redact_url, register_secret, scrub
from testenv import mender_data
from tests.cli import run

MONGO_PASSWORD = "Mongo-Pa55word-zq9"
ENCRYPTION_KEY = "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1leGFjdGx5ISE="      # base64 of 32 bytes
WEBHOOK_TOKEN = "T0SECRET/B0SECRET/webhook-Token-4411"


def test_redact_url_and_scrub():
    assert redact_url("mongodb://mender:s3cr%40t@db:27017/x?authSource=admin") == \
        "mongodb://mender:***@db:27017/x?authSource=admin"
    register_secret("AKIA-very-secret-value")
    assert scrub("key=AKIA-very-secret-value!") == "key=***!"


def test_no_secret_in_output_manifest_or_process_arguments(new_mongodb, minio, bucket, tmp_path):
    """Backup and restore with a password in the MongoDB URL and S3 keys in the environment;
    every byte the tool prints or stores, and the argv of it and its children, is checked."""
    mongo = new_mongodb(user="mender", password=MONGO_PASSWORD)    # authentication enforced
    mender_data.seed_mongo(mongo.client(), scale=0.05)
    mender_data.seed_bucket(minio.client(), bucket, count=5)
    url = mongo.url
    assert MONGO_PASSWORD in url
    secrets = [MONGO_PASSWORD, minio.secret_key, ENCRYPTION_KEY, WEBHOOK_TOKEN]
    e = {**minio.env(), "MONGODB_URL": url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}/dest",
         "MENDER_BACKUP_ARTIFACTS_BUCKET": bucket, "MENDER_BACKUP_ENCRYPTION_KEY": ENCRYPTION_KEY,
         # nothing listens there: the failures below warn about it, never naming it
         "MENDER_BACKUP_WEBHOOK_URL": f"http://127.0.0.1:9/services/{WEBHOOK_TOKEN}"}

    seen_args: list[str] = []
    stop = threading.Event()

    def watch() -> None:   # the argv of every process in our tree while it runs
        me = psutil.Process()
        while not stop.is_set():
            for p in me.children(recursive=True):
                try:
                    seen_args.append(" ".join(p.cmdline()))
                except psutil.Error:
                    pass
            time.sleep(0.02)

    t = threading.Thread(target=watch)
    t.start()
    outputs = []
    try:
        for args in (["backup", "--json"], ["backup"], ["list"], ["list", "--json"], ["verify", "--deep"],
                     ["restore", "latest", "--drop", "--json"], ["restore", "latest", "--drop", "--dry-run"]):
            r = run(*args, env=e)
            outputs += [r.stdout, r.stderr]
        # failures print the URL too: still redacted
        r = run("backup", env={**e, "MENDER_BACKUP_DESTINATION": "ftp://nowhere"}, check=False)
        outputs += [r.stdout, r.stderr]
        bad = {**e, "MONGODB_URL": f"mongodb://mender:{MONGO_PASSWORD}@127.0.0.1:1/?serverSelectionTimeoutMS=300"}
        r = run("backup", env=bad, check=False)
        outputs += [r.stdout, r.stderr]
        assert "mender:***@" in r.stderr
    finally:
        stop.set()
        t.join()
    stored = [p.read_bytes().decode("latin-1") for p in (tmp_path / "dest").rglob("*") if p.is_file()
              and not p.parent.name == "artifacts"]
    assert seen_args, "the watcher saw no process"
    for secret in secrets:
        for text in outputs + stored + seen_args:
            assert secret not in text
