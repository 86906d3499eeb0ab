"""`helm mender-backup restore` on the REAL Mender charts 5.13.1, 6.9.0, 7.9.4 and 8.2.1
(tests/mender_release.py), through the real helm with our plugin, against a real
Kubernetes API, real MongoDB wire servers and MinIO.

What a restore must do on a live release, read back from the API (not through our code):
Mender stopped while documents go in, the Secrets its pods read moved to the restored
stores, the signing keys untouched by the upgrade, every pod template restarted, replicas
as they were, one new helm revision that `helm rollback` undoes.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest

from mender_backup.kube.workloads import QUIESCED, RESTARTED_AT
from testenv import mender_data
from tests import cli
from tests.faults import TcpProxy
from tests.mender_release import NO_PODS, install_mender, mender_values, plugin_error, secret, workloads

MENDER_DBS = {db for db, _ in mender_data.BASE_COUNTS}


def collections(client) -> dict[str, int]:
    return {f"{db}.{c}": client[db][c].count_documents({})
            for db in sorted(set(client.list_database_names()) & MENDER_DBS)
            for c in sorted(client[db].list_collection_names())}


def objects(s3, bucket: str) -> dict[str, int]:
    return {o["Key"]: o["Size"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in p.get("Contents", [])}


class Watch:
    """Samples, while a restore runs, the documents in the target and the replicas the API
    holds for every Deployment: what a watch of the cluster would see."""

    def __init__(self, hx, ns: str, target):
        self.hx, self.ns, self.client = hx, ns, target.client()
        self.samples: list[tuple[int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # every collection (each arrives in a few large batches; one alone jumps from 0 to full)
            docs = sum(self.client[db][c].estimated_document_count() for db, c in mender_data.BASE_COUNTS)
            deps = self.hx.cluster.get(f"/apis/apps/v1/namespaces/{self.ns}/deployments")["items"]
            self.samples.append((docs, {d["metadata"]["name"]: d["spec"]["replicas"] for d in deps}))
            time.sleep(0.02)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def mender_release(helm_e2e, minio, new_mongodb, tmp_path):
    """make(helm, version, **values) -> a Mender release with seeded data and a real backup."""
    s3 = minio.client()

    def make(helm_name: str, version: str, embedded: bool = False, prepare=None, bucket: str | None = None,
             **extra):
        hx = helm_e2e(helm_name)
        ns = hx.new_namespace()
        source = new_mongodb()
        mender_data.seed_mongo(source.client(), scale=2)
        bucket = bucket or f"art-{uuid.uuid4().hex[:8]}"
        mender_data.seed_bucket(s3, bucket, count=8)
        if prepare:
            prepare(hx, ns, bucket)
        backups = f"bk-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=backups)
        dest = f"s3://{backups}/mender"
        install_mender(hx, ns, version, mender_values(version, mongodb_url=source.url, minio=minio, bucket=bucket,
                                                      embedded=embedded, **extra), tmp_path)
        hx("-n", ns, "mender-backup", "install", "mender", "--destination", dest)
        # the backup the CronJob's pod would take (test_node.py runs the real pod)
        r = cli.run("backup", "--artifacts-bucket", bucket, "--json",
                    env={**minio.env(), "MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": dest})
        return hx, ns, source, bucket, dest, cli.result_of(r)["id"]

    return make


@pytest.mark.parametrize("helm_name, version", [("helm3", "5.13.1"), ("helm3", "6.9.0"), ("helm3", "7.9.4"),
                                                ("helm3", "8.2.1"), ("helm4", "8.2.1")])
def test_restore_moves_the_release_onto_the_restored_stores(mender_release, new_mongodb, minio, helm_name, version):
    hx, ns, source, bucket, _, backup_id = mender_release(helm_name, version)
    s3 = minio.client()
    before = workloads(hx, ns)
    keys = {name: secret(hx, ns, name)["private.pem"] for name in ("rsa-useradm", "rsa-device-auth")}
    old_mongo, old_s3 = secret(hx, ns, "mongodb-common"), secret(hx, ns, "artifacts-storage")
    target = new_mongodb()
    new_bucket = f"restored-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=new_bucket)

    # the restore reaches the target through a slow link (--connect-url), so that the watch
    # samples the insert many times; Mender is told the direct URL
    slow = TcpProxy(target.port)
    slow.delay = 0.05
    try:
        with Watch(hx, ns, target) as watch:
            proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id,
                      "--mongodb-url", target.url, "--connect-url", f"mongodb://127.0.0.1:{slow.port}/",
                      "--bucket", new_bucket, "--yes", env=minio.env())
    finally:
        slow.close()

    # the data
    assert collections(target.client()) == collections(source.client()) != {}
    assert objects(s3, new_bucket) == objects(s3, bucket) != {}
    # Mender was stopped while documents went in: every sample with documents in the target
    # taken before the last one (the restore's end) shows every Deployment at 0
    final = watch.samples[-1][0]
    inserting = [reps for docs, reps in watch.samples if 0 < docs < final]
    assert inserting, "no sample caught the insert: make the data set bigger"
    assert all(set(reps.values()) == {0} for reps in inserting), inserting[:3]

    # the Secrets Mender's pods read now name the restored stores
    mongo, art = secret(hx, ns, "mongodb-common"), secret(hx, ns, "artifacts-storage")
    assert mongo["MONGO"].decode() == mongo["MONGO_URL"].decode() == target.url
    assert art["AWS_BUCKET"].decode() == new_bucket
    if "STORAGE_BUCKET" in art:
        assert art["STORAGE_BUCKET"].decode() == new_bucket
    # the signing keys are byte for byte what they were: no session or token is invalidated
    for name, pem in keys.items():
        assert secret(hx, ns, name)["private.pem"] == pem, name
    # every workload as it was, and every Deployment's pods restarted
    after = workloads(hx, ns)
    assert set(after) == set(before)
    for name, obj in after.items():
        assert QUIESCED not in (obj["metadata"].get("annotations") or {}), name
        if name.startswith("cronjob/"):
            assert bool(obj["spec"].get("suspend")) == bool(before[name]["spec"].get("suspend")), name
            continue
        assert obj["spec"]["replicas"] == before[name]["spec"]["replicas"], name
        if name.startswith("deployment/"):
            restarted = (obj["spec"]["template"]["metadata"].get("annotations") or {}).get(RESTARTED_AT)
            was = (before[name]["spec"]["template"]["metadata"].get("annotations") or {}).get(RESTARTED_AT)
            assert restarted and restarted != was, name
    # one new revision, same chart version, migrations setting kept as the release had it
    status = hx.status("mender", ns)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    assert status["chart"]["metadata"]["version"] == version if "chart" in status else True
    values = hx.values("mender", ns, 2)
    assert values["dbmigration"] == {"enable": False}
    assert values["global"]["mongodb"]["URL"] == target.url and values["global"]["s3"]["AWS_BUCKET"] == new_bucket
    m = re.search(r"\brollback mender (\d+) --namespace (\S+)", proc.stdout)
    assert m and m.group(1) == "1" and m.group(2) == ns, proc.stdout + proc.stderr
    assert minio.secret_key not in proc.stdout + proc.stderr
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr       # the carried-over keys are never shown

    # the printed rollback brings back the old Secrets
    hx("rollback", "mender", m.group(1), "-n", ns)
    assert secret(hx, ns, "mongodb-common") == old_mongo
    assert secret(hx, ns, "artifacts-storage") == old_s3
    for name, pem in keys.items():
        assert secret(hx, ns, name)["private.pem"] == pem, name


@pytest.mark.parametrize("version", ["6.9.0", "8.2.1"])
def test_embedded_mongodb_release_is_repointed_consistently(mender_release, new_mongodb, minio, version):
    """6.x/7.x ignore global.mongodb.URL while the chart's MongoDB is on; 8.x refuses to
    render. The plan turns it off with the new URL, so the upgrade works."""
    hx, ns, source, bucket, _, backup_id = mender_release("helm3", version, embedded=True)
    assert hx.values("mender", ns, all_values=True)["mongodb"]["enabled"] is True
    target = new_mongodb()
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id,
              "--mongodb-url", target.url, "--yes", env=minio.env())
    assert "turns it off (mongodb.enabled: false)" in proc.stderr
    assert collections(target.client()) == collections(source.client())
    values = hx.values("mender", ns, 2)
    assert values["mongodb"]["enabled"] is False and values["global"]["mongodb"]["URL"] == target.url
    assert secret(hx, ns, "mongodb-common")["MONGO_URL"].decode() == target.url
    assert hx.status("mender", ns)["info"]["status"] == "deployed"


def test_embedded_mongodb_out_of_reach_is_refused_before_anything(mender_release, minio):
    """Restoring into the chart's own MongoDB needs a way in from here (a port-forward):
    without one, the refusal comes before any workload stops."""
    hx, ns, _, _, _, backup_id = mender_release("helm3", "8.2.1", embedded=True)
    before = workloads(hx, ns)
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id, "--drop", "--yes",
              env={**minio.env(), "MENDER_BACKUP_CONNECT_MONGODB_URL": ""}, check=False)
    assert proc.returncode == 6
    assert "--connect-url" in plugin_error(proc) and "nothing was changed" in plugin_error(proc)
    assert workloads(hx, ns) == before and hx.status("mender", ns)["version"] == 1


def test_existing_secret_for_s3_is_updated(mender_release, new_mongodb, minio, tmp_path):
    """With global.s3.existingSecret Mender reads the bucket from that Secret, not from values:
    the restore updates it (its previous content saved first: helm rollback cannot undo it)."""
    def my_s3(hx, ns, bucket):
        hx.cluster.request("POST", f"/api/v1/namespaces/{ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-s3"},
            "stringData": {"AWS_BUCKET": bucket, "STORAGE_BUCKET": bucket, "AWS_URI": minio.endpoint,
                           "AWS_REGION": "us-east-1", "AWS_AUTH_KEY": minio.access_key,
                           "AWS_AUTH_SECRET": minio.secret_key}})
    hx, ns, _, bucket, _, backup_id = mender_release("helm3", "8.2.1", prepare=my_s3,
                                                     **{"global.s3.existingSecret": "my-s3"})
    new_bucket = f"restored-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=new_bucket)
    target = new_mongodb()
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id, "--mongodb-url", target.url,
              "--bucket", new_bucket, "--yes", env={**minio.env(), "MENDER_BACKUP_STATE_DIR": str(tmp_path)})
    s = secret(hx, ns, "my-s3")
    assert s["AWS_BUCKET"].decode() == s["STORAGE_BUCKET"].decode() == new_bucket
    assert s["AWS_AUTH_SECRET"].decode() == minio.secret_key      # other keys untouched
    assert "  3. set AWS_BUCKET, STORAGE_BUCKET in Secret my-s3" in proc.stderr and "  4. " in proc.stderr
    assert objects(minio.client(), new_bucket) == objects(minio.client(), bucket)
    (saved,) = tmp_path.glob("mender-backup-mender-secrets-*.yaml")
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    assert "name: my-s3" in saved.read_text()


def test_backup_from_a_newer_mender_is_refused_without_force(mender_release, new_mongodb, minio):
    hx, ns, source, bucket, dest, _ = mender_release("helm3", "7.9.4")
    r = cli.run("backup", "--json", env={**minio.env(), "MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": dest,
                                         "MENDER_BACKUP_MENDER_APP_VERSION": "v9.0.0"})
    newer = cli.result_of(r)["id"]
    target = new_mongodb()
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", newer, "--mongodb-url", target.url,
              "--yes", env=minio.env(), check=False)
    assert proc.returncode == 4
    assert "is from a newer Mender (written by Mender v9.0.0, the release runs" in plugin_error(proc)
    assert collections(target.client()) == {} and hx.status("mender", ns)["version"] == 1


def test_dry_run_shows_every_step_and_changes_nothing(mender_release, new_mongodb, minio):
    # the chart's default bucket name, which its default storage proxy route names
    hx, ns, _, _, _, backup_id = mender_release("helm3", "8.2.1", bucket="mender-artifact-storage")
    before = workloads(hx, ns)
    target = new_mongodb()
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:6]}"
    minio.client().create_bucket(Bucket=elsewhere)
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id, "--mongodb-url", target.url,
              "--bucket", elsewhere, "--dry-run", env=minio.env())
    err, out = proc.stderr, proc.stdout
    assert "  1. stop " in err and "deployment/mender-deployments (1 -> 0)" in err
    assert "statefulset/mender-nats (3 -> 0)" in err and "cronjob/mender-backup (suspend)" in err
    assert f"2. restore backup {backup_id}" in err
    assert "  3. " in err and "upgrade mender mender/mender --version 8.2.1" in err   # no Secret to change
    assert "useradm.certs.key from Secret rsa-useradm: the signing key is kept" in err
    assert "  4. start again as before and restart:" in err
    assert "+    URL: " in out and "mongodb://" in out            # the values diff
    assert "+    key: ***" in out and "PRIVATE KEY" not in out      # the carried-over keys, redacted
    assert f"+    AWS_BUCKET: {elsewhere}" in out
    assert f"+    customRule: 'PathRegexp(`^/{elsewhere}`)'" in out    # the storage proxy follows the bucket
    assert "plan for " in out and "create  deviceauth.devices" in out     # the data plan
    assert "dry run: nothing was changed" in err
    assert workloads(hx, ns) == before and hx.status("mender", ns)["version"] == 1
    assert collections(target.client()) == {}


def test_failed_data_step_on_a_new_database_starts_mender_again(mender_release, new_mongodb, minio):
    """The target holds data and --drop was not given: the data step refuses before writing;
    Mender's own database was never touched, so its workloads start again as they were."""
    hx, ns, source, _, _, backup_id = mender_release("helm3", "8.2.1")
    before = workloads(hx, ns)
    target = new_mongodb()
    target.client()["deviceauth"]["devices"].insert_one({"_id": "already-here"})
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id, "--mongodb-url", target.url,
              "--yes", env=minio.env(), check=False)
    assert proc.returncode == 4
    assert "target database(s) not empty" in plugin_error(proc)
    assert "state: workloads: started again as they were" in proc.stderr
    assert "state: release: unchanged at revision 1" in proc.stderr
    after = workloads(hx, ns)
    assert {k: v["spec"].get("replicas") for k, v in after.items()} == \
        {k: v["spec"].get("replicas") for k, v in before.items()}
    assert not any(QUIESCED in (v["metadata"].get("annotations") or {}) for v in after.values())
    assert hx.status("mender", ns)["version"] == 1


def test_in_place_restore_still_upgrades_so_migrations_run(mender_release, minio):
    """Back into the release's own database and bucket (`--drop`), with no value to change
    (5.x keeps its keys in values): the upgrade runs anyway, so a real cluster's migration
    Jobs (pre-upgrade hooks) bring an older backup's data up to the running Mender."""
    hx, ns, source, bucket, _, backup_id = mender_release("helm3", "5.13.1")
    want = collections(source.client())
    source.client()["deviceauth"]["devices"].delete_many({})          # damage after the backup
    source.client()["useradm"]["users"].insert_one({"_id": "intruder"})
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id, "--drop", "--yes",
              env=minio.env())
    assert collections(source.client()) == want
    assert "values: unchanged (the upgrade still runs" in proc.stderr
    assert hx.status("mender", ns)["version"] == 2
    assert hx.values("mender", ns, 2) == hx.values("mender", ns, 1)


def test_new_cluster_gets_the_backups_signing_keys(mender_release, helm_e2e, new_mongodb, minio, tmp_path,
                                                    kube_cluster):
    """An encrypted backup holds Mender's key Secrets. Restored into a fresh installation (its
    chart generated other keys), the release ends up with the backup's keys, so tokens
    signed before the backup still verify."""
    from mender_backup.format.encryption import Key
    hx, old_ns, source, bucket, dest, _ = mender_release("helm3", "8.2.1")
    key = Key.generate().to_base64()
    old_keys = {n: secret(hx, old_ns, n)["private.pem"] for n in ("rsa-useradm", "rsa-device-auth")}
    r = cli.run("backup", "--artifacts-bucket", bucket, "--json",
                env={**minio.env(), "MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": dest,
                     "MENDER_BACKUP_ENCRYPTION_KEY": key, "MENDER_BACKUP_MENDER_SECRETS": "rsa-useradm,rsa-device-auth",
                     "MENDER_BACKUP_MENDER_NAMESPACE": old_ns, "KUBECONFIG": str(kube_cluster.kubeconfig)})
    backup_id = cli.result_of(r)["id"]

    # the new cluster: a fresh install (new keys), its own backup release on the same destination
    ns = hx.new_namespace()
    install_mender(hx, ns, "8.2.1", mender_values("8.2.1", mongodb_url=new_mongodb().url, minio=minio,
                                                  bucket=bucket), tmp_path)
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", dest)
    assert secret(hx, ns, "rsa-useradm")["private.pem"] != old_keys["rsa-useradm"]
    target = new_mongodb()
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id, "--mongodb-url", target.url,
              "--yes", env={**minio.env(), "MENDER_BACKUP_ENCRYPTION_KEY": key})
    assert "useradm.certs.key from the backup's rsa-useradm" in proc.stderr
    for name, pem in old_keys.items():
        assert secret(hx, ns, name)["private.pem"] == pem, name
    assert collections(target.client()) == collections(source.client())
    assert key not in proc.stdout + proc.stderr and "PRIVATE KEY" not in proc.stdout + proc.stderr

    # without the key, the encrypted backup is refused before anything stops
    before = workloads(hx, ns)
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", backup_id, "--mongodb-url", target.url,
              "--drop", "--yes", env=minio.env(), check=False)
    assert proc.returncode == 6 and "key" in plugin_error(proc)
    assert workloads(hx, ns) == before
