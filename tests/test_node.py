"""What we ship, run by a real kubelet: a real Mender chart install (its own Secrets),
`helm mender-backup install` and `run` through the plugin, and the Jobs' pods running
our image on the node of testenv/node.py (containerd, kubelet, controller-manager,
scheduler), against DocumentDB and MinIO on 127.0.0.1 (so the pods use hostNetwork).

Each test reads the outcome independently of our code: Job conditions and pod logs
through the API, objects in MinIO, the target database.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from testenv import mender_data, servers
from testenv.kube import wait_for
from testenv.node import NAME as NODE
from tests.cli import tool_env
from tests.faults import TcpProxy
from tests.helmutil import CHART, Helm
from tests.mender_release import chart_file, mender_values, write_values

# what our chart needs to run on this node: the image imported, never pulled; the
# servers on the host's 127.0.0.1
NODE_VALUES = {"hostNetwork": True, "image": {"pullPolicy": "Never"}, "backoffLimit": 0}


@pytest.fixture(scope="module")
def hx(kube_node, plugin_installs) -> Helm:
    inst = plugin_installs("helm3")
    env = {k: v for k, v in tool_env(inst["env"]).items() if k not in ("HELM_NAMESPACE", "HELM_KUBECONTEXT")}
    return Helm("helm3", inst["helm"], {**env, "KUBECONFIG": str(kube_node.kubeconfig)}, kube_node)


@dataclass
class Mender:
    """A Mender release and its backup release in a namespace of their own."""
    ns: str
    bucket: str
    backups: str
    mongodb: object


def install(hx: Helm, image, tmp: Path, minio, mongodb, mongodb_url: str | None = None,
            secret_key: str | None = None, **backup_values) -> Mender:
    ns = f"n-{uuid.uuid4().hex[:8]}"
    hx.cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": ns}})
    s3 = minio.client()
    bucket, backups = f"art-{uuid.uuid4().hex[:8]}", f"bak-{uuid.uuid4().hex[:8]}"
    mender_data.seed_bucket(s3, bucket, count=4)
    s3.create_bucket(Bucket=backups)
    values = mender_values("5.13.1", mongodb_url=mongodb_url or mongodb.url, minio=minio, bucket=bucket,
                           secret_key=secret_key, unschedulable=True)
    hx("install", "mender", str(chart_file("5.13.1")), "-n", ns, "-f", str(write_values(values, tmp / f"{ns}-mender.yaml")))
    ours = write_values({**NODE_VALUES, **backup_values}, tmp / f"{ns}-backup.yaml")
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", f"s3://{backups}/prod",
       "--image", image.ref, "-f", str(ours))
    return Mender(ns, bucket, backups, mongodb)


def run_job(hx: Helm, ns: str) -> str:
    out = hx("-n", ns, "mender-backup", "run", "mender").stdout.strip()
    return out.split()[0].removeprefix("job.batch/")


def set_suspend(cluster, ns: str, suspend: bool) -> None:
    """The backup CronJob's schedule on or off, through the API (as an operator's kubectl patch)."""
    for cj in cluster.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs")["items"]:
        cj["spec"]["suspend"] = suspend
        cluster.request("PUT", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{cj['metadata']['name']}", cj)


def job_outcome(cluster, ns: str, job: str) -> dict | None:
    """The Job's final condition (Complete or Failed), once it has one."""
    conds = cluster.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{job}").get("status", {}).get("conditions", [])
    done = [c for c in conds if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
    return done[0] if done else None


def wait_job(cluster, ns: str, job: str, timeout: float = 240) -> dict:
    return wait_for(lambda: job_outcome(cluster, ns, job), f"job {ns}/{job} to finish", timeout)


def job_pods(cluster, ns: str, job: str) -> list[dict]:
    sel = urllib.parse.quote(f"job-name={job}")
    return cluster.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={sel}")["items"]


def pod_log(cluster, ns: str, pod: dict) -> str:
    return cluster.text(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log")


def plugin_list(hx: Helm, m: Mender, minio) -> list[dict]:
    out = hx("-n", m.ns, "mender-backup", "list", "mender", "--json", env=minio.env()).stdout
    return [e["result"] for e in map(json.loads, out.splitlines()) if e.get("event") == "result"][0]


def manifests(minio, bucket: str) -> list[str]:
    objs = minio.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in objs if o["Key"].endswith("/manifest.json")]


@pytest.fixture(scope="module")
def backed_up(hx, image, minio, tmp_path_factory):
    """A Mender installation whose backup Job has run on the node."""
    tmp = tmp_path_factory.mktemp("node-backup")
    mongo = servers.start_documentdb(tmp / "source")
    mender_data.seed_mongo(mongo.client(), scale=0.05, full_mongodb=True)
    m = install(hx, image, tmp, minio, mongo)
    job = run_job(hx, m.ns)
    outcome = wait_job(hx.cluster, m.ns, job)
    yield m, job, outcome
    mongo.stop()


def test_backup_job_runs_our_image_on_the_node_and_list_shows_it(hx, image, backed_up, minio):
    m, job, outcome = backed_up
    (pod,) = job_pods(hx.cluster, m.ns, job)
    log = pod_log(hx.cluster, m.ns, pod)
    assert outcome["type"] == "Complete", f"{outcome}\n{log}"
    assert pod["spec"]["nodeName"] == NODE and pod["status"]["phase"] == "Succeeded"
    (status,) = pod["status"]["containerStatuses"]
    assert status["image"].endswith(image.ref.split("/", 1)[1])
    assert status["state"]["terminated"]["exitCode"] == 0
    result = json.loads(log.splitlines()[-1])["result"]
    assert manifests(minio, m.backups) == [f"prod/backups/{result['id']}/manifest.json"]
    assert [(b["id"], b["complete"]) for b in plugin_list(hx, m, minio)] == [(result["id"], True)]


def test_restore_job_of_the_chart_runs_to_completion(hx, backed_up, minio, new_mongodb):
    m, _, _ = backed_up
    target, new_bucket = new_mongodb(), f"res-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=new_bucket)
    hx("upgrade", "mender-backup", str(CHART), "-n", m.ns, "--reuse-values", "--set", "restore.enabled=true",
       "--set", "restore.backupId=latest", "--set", f"restore.mongodb.url={target.url}",
       "--set", f"restore.artifactsBucket={new_bucket}")
    job = "mender-backup-restore-r2"
    outcome = wait_job(hx.cluster, m.ns, job)
    (pod,) = job_pods(hx.cluster, m.ns, job)
    log = pod_log(hx.cluster, m.ns, pod)
    assert outcome["type"] == "Complete", f"{outcome}\n{log}"
    assert json.loads(log.splitlines()[-1])["result"]["verified"] is True
    src, dst = m.mongodb.client(), target.client()
    for db, coll in mender_data.BASE_COUNTS:
        assert dst[db][coll].count_documents({}) == src[db][coll].count_documents({}) > 0
    s3 = minio.client()
    keys = lambda b: sorted(o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", []))  # noqa: E731
    assert keys(new_bucket) == keys(m.bucket) != []


def test_wrong_s3_key_is_a_failed_job_whose_log_is_one_line(hx, image, minio, new_mongodb, tmp_path):
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.02)
    m = install(hx, image, tmp_path, minio, mongo, secret_key="not-the-secret-key")
    job = run_job(hx, m.ns)
    outcome = wait_job(hx.cluster, m.ns, job)
    (pod,) = job_pods(hx.cluster, m.ns, job)
    log = pod_log(hx.cluster, m.ns, pod)
    assert outcome["type"] == "Failed" and outcome["reason"] == "BackoffLimitExceeded", outcome
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 6
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "access denied" in lines[0], log
    assert "not-the-secret-key" not in log
    assert manifests(minio, m.backups) == []


def test_run_killed_at_its_deadline_leaves_no_manifest_nor_lock_and_the_next_scheduled_run_succeeds(
        hx, image, minio, new_mongodb, tmp_path):
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=1)
    proxy = TcpProxy(mongo.port)        # MongoDB as the pods reach it
    try:
        # suspended while the run is killed: a scheduled run stalled beside it would hold the
        # lock, and under hostNetwork every pod's lock names the same host
        m = install(hx, image, tmp_path, minio, mongo, mongodb_url=f"mongodb://127.0.0.1:{proxy.port}/",
                    schedule="* * * * *", activeDeadlineSeconds=30, suspend=True)
        proxy.stall_after = 256 << 10       # MongoDB stops answering in the middle of a collection
        killed = run_job(hx, m.ns)
        outcome = wait_job(hx.cluster, m.ns, killed, timeout=120)
        assert outcome["type"] == "Failed" and outcome["reason"] == "DeadlineExceeded", outcome
        assert proxy.answered > proxy.stall_after       # it was dumping when it was killed
        # the pod got SIGTERM, cleaned up and is gone
        wait_for(lambda: not job_pods(hx.cluster, m.ns, killed), "the killed pod to be gone", 60)
        objects = [o["Key"] for o in minio.client().list_objects_v2(Bucket=m.backups).get("Contents", [])]
        assert not any(k.endswith(("manifest.json", ".lock")) for k in objects), objects
        assert not minio.client().list_multipart_uploads(Bucket=m.backups).get("Uploads")

        proxy.stall_after = None
        started = time.monotonic()
        lifted = datetime.now(timezone.utc).replace(microsecond=0)
        set_suspend(hx.cluster, m.ns, False)

        def scheduled_run_done() -> dict | None:
            """The outcome of the first run the CronJob started after the stall was lifted."""
            jobs = hx.cluster.get(f"/apis/batch/v1/namespaces/{m.ns}/jobs")["items"]
            done = [job_outcome(hx.cluster, m.ns, j["metadata"]["name"]) for j in jobs
                    if datetime.fromisoformat(j["metadata"]["creationTimestamp"]) >= lifted
                    and "cronjob.kubernetes.io/instantiate" not in j["metadata"].get("annotations", {})]
            return next((o for o in done if o), None)

        outcome = wait_for(scheduled_run_done, "a scheduled run to finish", timeout=150)
        assert outcome["type"] == "Complete", outcome
        listing = plugin_list(hx, m, minio)
        assert [b["complete"] for b in listing] == [True], listing
        print(f"scheduled run finished {time.monotonic() - started:.0f}s after the stall was lifted")
    finally:
        proxy.stall_after = None
        proxy.close()
