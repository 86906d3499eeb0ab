"""The upgrade guard on a live release: real charts running real Mender pods on the one-node
Kubernetes of testenv/mender_cluster.py, external DocumentDB and MinIO, our CronJob's image.

1. **A failed upgrade, rolled back.** Mender v4.0.1 under chart 6.9.0 (its own images), seeded
   through its APIs; `helm mender-backup upgrade` to 8.2.1 with a values change that breaks the
   last migration Job (an image tag that does not exist: the chart's eight migrations run one
   after another, so the others, iot-manager's schema 1.1.1 -> 1.2.0 among them, have rewritten
   the data when it fails). A user and a device are added after the guarding backup; then
   `helm mender-backup rollback`: the release is back at its revision and chart, the data at
   the backup (iot-manager's schema 1.1.1 again, the later user and device gone) and Mender's
   APIs pass every check on what was there before.
2. **A guarded upgrade.** Mender v4.1.2 under chart 7.9.4, seeded; `helm mender-backup upgrade`
   to 8.2.1: the backup is taken by our CronJob's own Job and verified, the chart's eight
   migration Jobs complete, every Deployment is Ready, and Mender v4.1.3's APIs pass every check
   on what v4.1.2 made.

Facts are read independently of our code: the release's history through helm, Jobs and pods
through kubectl as the admin, the manifests in MinIO, the databases with pymongo, Mender's
answers (smoke.sh, tests/mender_api.py)."""

from __future__ import annotations

import json
import uuid

import pymongo
import pytest

from testenv import mender_cluster, servers
from tests.conftest import IN_CI, _need_documentdb
from tests.helmutil import Helm
from tests.live_checks import (NS, JobWatch, assert_every_deployment_ready, assert_every_migration_completed,
                               completed_migrations)
from tests.mender_api import Mender, read_env
from tests.mender_release import write_values
from tests.cli import tool_env

pytestmark = pytest.mark.timeout(1800)

CROSS, FROM = mender_cluster.CROSS, mender_cluster.UPGRADE_FROM
TARGET = str(mender_cluster.CHARTS / "mender-8.2.1.tgz")
UP_NS = "mender-up"


@pytest.fixture(scope="module")
def node(image, minio, plugin_installs, tmp_path_factory):
    try:
        mender_cluster.need()
        _need_documentdb()
    except servers.ToolMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("upgrade")
    cluster = mender_cluster.start(tmp, images=[image.archive])
    stores: list = []
    try:
        cluster.forward(minio.server.port)
        inst = plugin_installs("helm3")
        env = {k: v for k, v in tool_env(inst["env"]).items() if k not in ("HELM_NAMESPACE", "HELM_KUBECONTEXT")}
        hx = Helm("helm3", inst["helm"], {**env, "KUBECONFIG": str(cluster.kubeconfig)}, None)
        yield {"cluster": cluster, "tmp": tmp, "stores": stores, "hx": hx}
    finally:
        cluster.stop()
        for s in stores:
            s.stop()


def install(node, minio, image, mender: mender_cluster.OlderMender, namespace: str) -> dict:
    """The older chart and Mender on a DocumentDB and bucket of their own, seeded; our CronJob
    beside it (its schedule never comes: the guard starts its own Job from it)."""
    cluster, ip = node["cluster"], node["cluster"].host_ip
    db = servers.start_documentdb(node["tmp"] / f"docdb-{namespace}")
    node["stores"].append(db)
    cluster.forward(db.port)
    bucket = f"art-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=bucket)
    url = f"mongodb://{ip}:{db.port}/"
    cluster.install_mender(url, f"http://{ip}:{minio.server.port}", minio.access_key, minio.secret_key, bucket,
                           chart=mender.chart, values=mender.values, namespace=namespace, prefix=mender.prefix)
    state = node["tmp"] / f"smoke-{namespace}"
    seed = cluster.smoke("seed", state, namespace=namespace, prefix=mender.prefix)
    assert seed.returncode == 0, seed.stdout + seed.stderr
    backups = f"bk-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=backups)
    ours = write_values({"image": {"pullPolicy": "Never"}, "schedule": "0 3 1 1 *", "backoffLimit": 0},
                        node["tmp"] / f"backup-values-{namespace}.yaml")
    node["hx"]("-n", namespace, "mender-backup", "install", "mender", "--destination", f"s3://{backups}/up",
               "--image", image.ref, "-f", str(ours))
    # the values 8.2.1 needs on this node (the recipe's) and the stores, as the operator's -f files
    stores = write_values({"global": {"mongodb": {"URL": url}, "s3": {
        "AWS_URI": f"http://{ip}:{minio.server.port}", "AWS_BUCKET": bucket, "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key}}}, node["tmp"] / f"stores-{namespace}.yaml")
    return {"db": db, "url": url, "bucket": bucket, "backups": backups, "state": state, "namespace": namespace,
            "values": ["-f", str(mender_cluster.RECIPE / "values.yaml"), "-f", str(stores)]}


def history(node, namespace: str) -> list[dict]:
    return json.loads(node["hx"]("history", "mender", "-n", namespace, "-o", "json").stdout)


def guards(minio, backups: str) -> list[dict]:
    """The `mender` part of every backup manifest in the bucket, read from MinIO."""
    s3 = minio.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=backups).get("Contents", []) if o["Key"].endswith("manifest.json")]
    return [json.loads(s3.get_object(Bucket=backups, Key=k)["Body"].read())["mender"] for k in keys]


def schema(url: str, db: str) -> str:
    """The newest migration_info version of a database, read directly (the host reaches the
    relayed address the pods use)."""
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10000)
    versions = [tuple(int(d["version"][k]) for k in ("major", "minor", "patch"))
                for d in client[db].migration_info.find()]
    return ".".join(map(str, max(versions)))


# --- 1. a failed upgrade from 6.9.0, rolled back -------------------------------------------------

@pytest.fixture(scope="module")
def failed(node, minio, image):
    """6.9.0 (v4.0.1) seeded; the guarded upgrade to 8.2.1 fails at the workflows migration Job;
    then a user and a device are added through v4.0.1's APIs (still running: a failed pre-upgrade
    hook leaves the release's objects as they were)."""
    old = install(node, minio, image, CROSS, NS)
    before = schema(old["url"], "iot_manager")
    with JobWatch(node["cluster"]) as watch:
        proc = node["hx"]("-n", NS, "mender-backup", "upgrade", "mender", TARGET, *old["values"],
                          "--set", "workflows.image.tag=no-such-tag", "--timeout", "60s", "--yes",
                          env=minio.env(), check=False)
    (node["tmp"] / "failed-upgrade-output.txt").write_text(proc.stdout + proc.stderr)
    after = schema(old["url"], "iot_manager")
    st = read_env(old["state"] / "state.env")
    api = Mender(node["cluster"].mender_env(), st["SMOKE_USER"], st["SMOKE_PASSWORD"])
    api.create_user("later@example.com", "Later-Passw0rd-4711")
    later_device = api.accept_new_device("02:00:00:00:99:01")
    return {**old, "proc": proc, "schema_before": before, "schema_after": after, "watched": watch.seen,
            "later_device": later_device}


def test_the_failed_upgrade_says_where_it_stopped_and_how_to_go_back(node, failed, minio):
    proc = failed["proc"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr
    assert "upgrade of mender failed: helm upgrade" in err, err[-3000:]
    assert "state: backup: " in err and "guards this upgrade (revision 1, chart 6.9.0)" in err, err[-3000:]
    assert "helm mender-backup rollback mender --to-upgrade " in err, err[-3000:]
    [guard] = guards(minio, failed["backups"])
    assert (guard["release"], guard["revision"], guard["chart_version"], guard["upgrade_to"]) == \
        ("mender", "1", "6.9.0", "8.2.1")
    assert guard["migrations"]["iot_manager"] == "1.1.1"
    assert minio.secret_key not in err + proc.stdout


def test_the_new_versions_migrations_had_rewritten_the_data(failed):
    """What makes the rollback necessary: iot-manager's migration to 1.2.0 ran before the failure."""
    assert (failed["schema_before"], failed["schema_after"]) == ("1.1.1", "1.2.0")
    names = {n for n, conds in failed["watched"].values() if "Complete" in conds}
    assert "mender-iot-manager-migration" in names, failed["watched"]
    assert "mender-workflows-migration" not in names


@pytest.fixture(scope="module")
def rolled_back(node, failed, minio):
    proc = node["hx"]("-n", NS, "mender-backup", "rollback", "mender", "--yes", env=minio.env(), check=False)
    (node["tmp"] / "rollback-output.txt").write_text(proc.stdout + proc.stderr)
    return {"proc": proc, "history": history(node, NS)}


def test_rollback_returns_the_release_to_its_revision(node, failed, rolled_back):
    proc = rolled_back["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = rolled_back["history"][-1]
    assert (last["revision"], last["chart"], last["status"]) == (3, "mender-6.9.0", "deployed"), rolled_back["history"]
    assert "Rollback to 1" in last["description"]
    assert_every_deployment_ready(node["cluster"], NS)        # 6.9.0's nine, as 8.2.1's


def test_rollback_returns_the_data_to_the_guarding_backup(node, failed, rolled_back):
    assert schema(failed["url"], "iot_manager") == "1.1.1"      # the new version's schema change is gone
    st = read_env(failed["state"] / "state.env")
    api = Mender(node["cluster"].mender_env(), st["SMOKE_USER"], st["SMOKE_PASSWORD"])
    assert "later@example.com" not in api.users() and st["SMOKE_USER"] in api.users()
    ids = {d["id"] for d in api.devices()}
    assert failed["later_device"] not in ids and st["DEVICE_ID"] in ids


def test_mender_passes_every_check_after_the_rollback(node, failed, rolled_back):
    r = node["cluster"].smoke("verify", failed["state"], prefix=CROSS.prefix)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("ok")]) >= 11, r.stdout


@pytest.fixture(scope="module")
def rehearsed(node, failed, rolled_back, minio):
    """The same failing upgrade, rehearsed on a scratch DocumentDB: the guarding backup restored
    there, the 8.2.1 migration Jobs run on it until the broken one."""
    scratch = servers.start_documentdb(node["tmp"] / "docdb-scratch")
    node["stores"].append(scratch)
    node["cluster"].forward(scratch.port)
    url = f"mongodb://{node['cluster'].host_ip}:{scratch.port}/"
    proc = node["hx"]("-n", NS, "mender-backup", "upgrade", "mender", TARGET, *failed["values"],
                      "--set", "workflows.image.tag=no-such-tag", "--timeout", "60s", "--dry-run",
                      env={**minio.env(), "MENDER_BACKUP_REHEARSE_MONGODB_URL": url}, check=False)
    return {"proc": proc, "url": url, "history": history(node, NS)}


def test_a_rehearsal_reports_the_failing_migration_without_touching_the_release(node, failed, rehearsed):
    proc = rehearsed["proc"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "rehearsal: the migration mender-workflows-migration of chart 8.2.1 failed on a copy of the data" in \
        proc.stderr and "the release was not touched" in proc.stderr, proc.stderr[-3000:]
    assert "rehearsal: mender-iot-manager-migration succeeded on the copy" in proc.stderr
    assert schema(rehearsed["url"], "iot_manager") == "1.2.0"        # the copy was migrated...
    assert schema(failed["url"], "iot_manager") == "1.1.1"           # ...the release's data was not
    assert rehearsed["history"][-1]["revision"] == 3                 # nor the release
    left = node["cluster"].get(f"/api/v1/namespaces/{NS}/secrets?labelSelector=mender-backup.io%2Frehearsal")["items"]
    assert left == []


# --- 2. a guarded upgrade from 7.9.4 ----------------------------------------------------------------

@pytest.fixture(scope="module")
def upgraded(node, rehearsed, minio, image):
    """7.9.4 (v4.1.2) in a namespace of its own (the 6.9.0 release uninstalled: the node has two
    CPUs), seeded; `helm mender-backup upgrade` to 8.2.1."""
    node["hx"]("uninstall", "mender", "-n", NS, "--wait")
    old = install(node, minio, image, FROM, UP_NS)
    cluster = node["cluster"]
    before = completed_migrations(cluster, UP_NS)
    with JobWatch(cluster, UP_NS) as watch:
        proc = node["hx"]("-n", UP_NS, "mender-backup", "upgrade", "mender", TARGET, *old["values"], "--yes",
                          env=minio.env(), check=False)
    (node["tmp"] / "upgrade-output.txt").write_text(proc.stdout + proc.stderr)
    after = completed_migrations(cluster, UP_NS)
    return {**old, "proc": proc, "watched": watch.seen, "history": history(node, UP_NS),
            "migrations": {u: n for u, n in after.items() if u not in before}}


def test_the_guarded_upgrade_backs_up_and_verifies_first(node, upgraded, minio, image):
    proc = upgraded["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [guard] = guards(minio, upgraded["backups"])
    assert (guard["revision"], guard["chart_version"], guard["app_version"], guard["upgrade_to"]) == \
        ("1", "7.9.4", "v4.1.2", "8.2.1")
    assert "taken and verified" in proc.stderr
    jobs = [j for j in node["cluster"].get(f"/apis/batch/v1/namespaces/{UP_NS}/jobs")["items"]
            if "-upgrade-" in j["metadata"]["name"]]
    assert len(jobs) == 1 and jobs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == image.ref
    listed = node["hx"]("-n", UP_NS, "mender-backup", "list", "mender", "--json", env=minio.env()).stdout
    [rows] = [e["result"] for e in map(json.loads, listed.splitlines()) if e.get("event") == "result"]
    [row] = rows
    assert row["guards"]["upgrade"] == guard["upgrade"] and row["guards"]["revision"] == "1", row


def test_the_upgrade_ran_every_migration_and_every_deployment_is_ready(node, upgraded):
    last = upgraded["history"][-1]
    assert (last["revision"], last["chart"], last["app_version"], last["status"]) == \
        (2, "mender-8.2.1", "v4.1.3", "deployed")
    assert_every_migration_completed(upgraded)
    assert_every_deployment_ready(node["cluster"], UP_NS)


def test_mender_4_1_3_passes_every_check_on_the_data_of_4_1_2(node, upgraded):
    r = node["cluster"].smoke("verify", upgraded["state"], namespace=UP_NS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("ok")]) >= 11, r.stdout
