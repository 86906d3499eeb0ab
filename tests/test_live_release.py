"""The flagship, on a live release: the real chart mender-8.2.1 running the real Mender v4.1.3
pods on a real one-node Kubernetes (kube-proxy, CoreDNS, a pod network; testenv/mender_cluster.py
runs ../shared/mender-on-k8s), external DocumentDB and MinIO.

Mender is seeded through its own APIs (`smoke.sh seed`). `helm mender-backup install` puts our
CronJob next to it; **its scheduled pod**, our image on the pod network, takes the backup while
Mender serves. `helm mender-backup restore` moves the release onto a new DocumentDB and a new
bucket: Mender stopped, data restored, `helm upgrade` (the chart's 8 migration Jobs run on the
restored data), pods restarted. Then the old DocumentDB is stopped, so that only the restored
one can answer, and Mender's APIs must pass every check (`smoke.sh verify`: login with the same
password, tokens issued before the backup, the device authenticates, the artifact downloads
byte for byte from the new bucket, the deployment is still offered).

Each fact is read independently of our code: Jobs, pods and events through kubectl as the
cluster's admin, objects in MinIO, Mender's answers. What breaks it: a restore that loses the
signing keys fails the two "token issued before the backup" checks, one without the artifacts
fails the download (both shown without Kubernetes in tests/test_mender_judges.py).

Across versions: Mender v4.0.1 under chart 6.9.0 (its own images, built from its source by
testenv/mender-version.sh) is installed beside, seeded, backed up with its signing keys and
uninstalled; the backup is restored into the 8.2.1 release (v4.1.3), whose migration Jobs bring
the data forward, and Mender's APIs must pass every check on what v4.0.1 made.
"""

from __future__ import annotations

import time
import uuid

import pytest

from testenv import mender_cluster, servers
from testenv.kube import wait_for
from tests.conftest import IN_CI, _need_documentdb
from tests.live_checks import (NS, JobWatch, assert_every_deployment_ready, assert_every_migration_completed,
                               completed_migrations, cronjob_jobs, finished, new_stores)
from tests.helmutil import Helm
from tests.mender_release import write_values
from tests import cli
from tests.cli import tool_env

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def live(image, minio, plugin_installs, tmp_path_factory):
    """The cluster with Mender 8.2.1 installed on DocumentDB A and a bucket, seeded."""
    try:
        mender_cluster.need()
        _need_documentdb()
    except servers.ToolMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("live")
    cluster = mender_cluster.start(tmp, images=[image.archive])
    stores: list = []
    try:
        a = servers.start_documentdb(tmp / "docdb-a")
        stores.append(a)
        bucket = f"art-{uuid.uuid4().hex[:8]}"
        minio.client().create_bucket(Bucket=bucket)
        cluster.forward(a.port, minio.server.port)
        ip = cluster.host_ip
        cluster.install_mender(f"mongodb://{ip}:{a.port}/", f"http://{ip}:{minio.server.port}",
                               minio.access_key, minio.secret_key, bucket)
        state = tmp / "smoke-state"
        seed = cluster.smoke("seed", state)
        assert seed.returncode == 0, seed.stdout + seed.stderr
        inst = plugin_installs("helm3")
        env = {k: v for k, v in tool_env(inst["env"]).items() if k not in ("HELM_NAMESPACE", "HELM_KUBECONTEXT")}
        hx = Helm("helm3", inst["helm"], {**env, "KUBECONFIG": str(cluster.kubeconfig)}, None)
        yield {"cluster": cluster, "a": a, "bucket": bucket, "state": state, "hx": hx, "tmp": tmp,
               "stores": stores}
    finally:
        cluster.stop()
        for s in stores:
            s.stop()


@pytest.fixture(scope="module")
def scheduled_backup(live, image, minio):
    """`helm mender-backup install` with an every-minute schedule; the first Job the CronJob
    controller starts runs to completion; then the schedule is suspended."""
    cluster, hx = live["cluster"], live["hx"]
    backups = f"bk-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=backups)
    ours = write_values({"image": {"pullPolicy": "Never"}, "schedule": "* * * * *", "backoffLimit": 0},
                        live["tmp"] / "backup-values.yaml")
    hx("-n", NS, "mender-backup", "install", "mender", "--destination", f"s3://{backups}/live",
       "--image", image.ref, "-f", str(ours))
    job = wait_for(lambda: next((j for j in cronjob_jobs(cluster) if finished(j)), None),
                   "the CronJob's first scheduled Job to finish", timeout=300, step=2.0)
    cluster.kubectl("-n", NS, "patch", "cronjob", job["metadata"]["ownerReferences"][0]["name"],
                    "-p", '{"spec":{"suspend":true}}')
    name = job["metadata"]["name"]
    pods = cluster.get(f"/api/v1/namespaces/{NS}/pods?labelSelector=job-name%3D{name}")["items"]
    log = cluster.kubectl("-n", NS, "logs", pods[0]["metadata"]["name"]) if pods else ""
    objects = minio.client().list_objects_v2(Bucket=backups).get("Contents", [])
    manifests = [o["Key"] for o in objects if o["Key"].endswith("/manifest.json")]
    return {"job": job, "pods": pods, "log": log, "backups": backups, "manifests": manifests}


def test_the_cronjobs_own_pod_took_the_backup(live, scheduled_backup, image):
    b = scheduled_backup
    assert finished(b["job"]) == "Complete", b["log"][-3000:]
    assert b["job"]["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    # made by the CronJob controller on its schedule, not by `helm mender-backup run`
    assert "cronjob.kubernetes.io/instantiate" not in b["job"]["metadata"].get("annotations", {})
    [pod] = b["pods"]
    assert pod["spec"]["containers"][0]["image"] == image.ref
    assert pod["spec"]["nodeName"] == "mk8s-node"
    assert not pod["spec"].get("hostNetwork"), "on the pod network, as in a real cluster"
    assert pod["status"]["podIP"].startswith("10.236.0.")
    assert len(b["manifests"]) == 1, b["manifests"]
    backup_id = b["manifests"][0].split("/")[-2]
    assert backup_id in b["log"]


def test_mender_kept_serving_after_the_backup(live, scheduled_backup):
    r = live["cluster"].smoke("verify", live["state"])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def restored(live, scheduled_backup, minio):
    """`helm mender-backup restore` of the scheduled backup into DocumentDB B and a new bucket;
    then DocumentDB A is stopped."""
    cluster, hx = live["cluster"], live["hx"]
    b, new_bucket = new_stores(live, minio, "b", "restored")
    before = completed_migrations(cluster)
    backup_id = scheduled_backup["manifests"][0].split("/")[-2]
    t0 = time.monotonic()
    with JobWatch(cluster) as watch:
        proc = hx("-n", NS, "mender-backup", "restore", "mender", "--backup", backup_id,
                  "--mongodb-url", f"mongodb://{cluster.host_ip}:{b.port}/", "--bucket", new_bucket,
                  "--chart", str(mender_cluster.CHARTS / "mender-8.2.1.tgz"), "--yes", env=minio.env(), check=False)
    took = time.monotonic() - t0
    (live["tmp"] / "restore-output.txt").write_text(proc.stdout + proc.stderr)   # what README's walk-through shows
    after = completed_migrations(cluster)
    a = live["a"]
    cluster.unforward(a.port)
    a.stop()
    return {"proc": proc, "b": b, "bucket": new_bucket, "took": took, "watched": watch.seen,
            "migrations": {u: n for u, n in after.items() if u not in before}}


def test_the_restore_moves_the_live_release(live, restored):
    proc, cluster = restored["proc"], live["cluster"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    mongo = cluster.secret("mongodb-common")
    assert mongo["MONGO_URL"].decode() == f"mongodb://{cluster.host_ip}:{restored['b'].port}/"
    assert cluster.secret("artifacts-storage")["AWS_BUCKET"].decode() == restored["bucket"]
    assert_every_deployment_ready(cluster)


def test_the_upgrades_migration_jobs_completed_on_the_restored_data(restored):
    assert_every_migration_completed(restored)


def test_mender_passes_every_check_on_the_restored_stores_alone(live, restored):
    """DocumentDB A is stopped: only the restored B can answer."""
    r = live["cluster"].smoke("verify", live["state"])
    assert r.returncode == 0, r.stdout + r.stderr
    oks = [ln for ln in r.stdout.splitlines() if ln.startswith("ok")]
    assert len(oks) >= 11, r.stdout


# --- across versions: Mender v4.0.1 (chart 6.9.0) backed up, restored into the 8.2.1 release ---

OLD_NS = "mender-old"


@pytest.fixture(scope="module")
def old_backup(live, restored, minio):
    """Mender v4.0.1 under chart 6.9.0 in namespace mender-old, on DocumentDB C and bucket C,
    seeded through its own APIs (smoke.sh with v4.0.1's host binaries); backed up from the host
    with its signing-key Secrets (encrypted, as they must be); then uninstalled: its pods would
    compete with 8.2.1's for the node's two CPUs, and the backup is all that remains of it."""
    cluster, hx, ip = live["cluster"], live["hx"], live["cluster"].host_ip
    c, bucket = new_stores(live, minio, "c", "old")
    cluster.install_mender(f"mongodb://{ip}:{c.port}/", f"http://{ip}:{minio.server.port}", minio.access_key,
                           minio.secret_key, bucket, chart=mender_cluster.CROSS.chart,
                           values=mender_cluster.CROSS.values, namespace=OLD_NS, prefix=mender_cluster.CROSS.prefix)
    state = live["tmp"] / "smoke-state-old"
    seed = cluster.smoke("seed", state, namespace=OLD_NS, prefix=mender_cluster.CROSS.prefix)
    assert seed.returncode == 0, seed.stdout + seed.stderr
    pods = cluster.get(f"/api/v1/namespaces/{OLD_NS}/pods")["items"]
    images = {ct["image"] for p in pods for ct in p["spec"]["containers"]}
    keys = {name: cluster.secret(name, OLD_NS)["private.pem"] for name in ("rsa-useradm", "rsa-device-auth")}

    key = cli.run("key", "generate").stdout.strip()
    backups = f"bk-old-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=backups)
    env = {**minio.env(), "MONGODB_URL": f"mongodb://{ip}:{c.port}/", "KUBECONFIG": str(cluster.kubeconfig),
           "MENDER_BACKUP_ENCRYPTION_KEY": key}
    r = cli.run("backup", "-d", f"s3://{backups}/old", "--artifacts-bucket", bucket, "--mender-secrets", "default",
                "--mender-namespace", OLD_NS, "--json", env=env)
    hx("uninstall", "mender", "-n", OLD_NS, "--wait")
    return {"c": c, "state": state, "images": images, "keys": keys, "key": key,
            "destination": f"s3://{backups}/old", "backup": cli.result_of(r)}


@pytest.fixture(scope="module")
def cross_restored(live, restored, old_backup, minio):
    """`helm mender-backup restore` of the v4.0.1 backup into the live 8.2.1 release, onto
    DocumentDB D and a new bucket; then C and B (the release's stores before) are stopped."""
    cluster, hx = live["cluster"], live["hx"]
    d, bucket = new_stores(live, minio, "d", "cross")
    before = completed_migrations(cluster)
    with JobWatch(cluster) as watch:
        proc = hx("-n", NS, "mender-backup", "restore", "mender", "--backup", old_backup["backup"]["id"],
                  "--destination", old_backup["destination"], "--mongodb-url", f"mongodb://{cluster.host_ip}:{d.port}/",
                  "--bucket", bucket, "--chart", str(mender_cluster.CHARTS / "mender-8.2.1.tgz"), "--yes",
                  env={**minio.env(), "MENDER_BACKUP_ENCRYPTION_KEY": old_backup["key"]}, check=False)
    after = completed_migrations(cluster)
    for store in (old_backup["c"], restored["b"]):       # C, and B (the flagship's restore target)
        cluster.unforward(store.port)
        store.stop()
    return {"proc": proc, "d": d, "bucket": bucket, "watched": watch.seen,
            "migrations": {u: n for u, n in after.items() if u not in before}}


def test_the_old_installation_ran_mender_4_0_1_under_chart_6_9_0(old_backup):
    mender = {i for i in old_backup["images"] if "/mendersoftware/" in i}
    assert mender and all(i.endswith(f":{mender_cluster.CROSS.version}") for i in mender), old_backup["images"]
    assert sorted(old_backup["backup"]["mender_secrets"]) == ["rsa-device-auth", "rsa-useradm"]


def test_the_4_0_1_backup_moves_into_the_8_2_1_release_with_its_keys(live, old_backup, cross_restored):
    proc, cluster = cross_restored["proc"], live["cluster"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert cluster.secret("mongodb-common")["MONGO_URL"].decode() == \
        f"mongodb://{cluster.host_ip}:{cross_restored['d'].port}/"
    assert cluster.secret("artifacts-storage")["AWS_BUCKET"].decode() == cross_restored["bucket"]
    for name, pem in old_backup["keys"].items():      # the old installation's signing keys, carried
        assert cluster.secret(name)["private.pem"] == pem, name
    assert_every_deployment_ready(cluster)


def test_the_migration_jobs_brought_the_4_0_1_data_forward(cross_restored):
    assert_every_migration_completed(cross_restored)


def test_mender_8_2_1_passes_every_check_on_the_data_of_4_0_1(live, old_backup, cross_restored):
    """What v4.0.1 made (user, device, tokens, artifact, deployment), checked through v4.1.3's
    APIs on DocumentDB D alone (A, B and C are stopped)."""
    r = live["cluster"].smoke("verify", old_backup["state"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("ok")]) >= 11, r.stdout
