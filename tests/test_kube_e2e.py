"""`helm mender-backup` end to end: the plugin installed through the real helm v3
and v4, against a real Kubernetes API (etcd + kube-apiserver, tests/kube.py).

No kubelet or controller runs: objects are created, validated and stored by the
API server (so helm install/upgrade/rollback are real), but no pod starts. The
data part of a restore runs on this machine against DocumentDB and MinIO, as the
plugin runs it. Everything is read back through the API with the admin token,
not through our code.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from testenv import mender_data
from tests import cli
from tests.helmutil import FIXTURES, Helm, helm_run

STAND_IN = FIXTURES / "stand-in-mender"
VALUES = FIXTURES / "mender-values.yaml"   # a production-like values file (comments, anchors, quoting)


# --- a chart repository over HTTP, holding the stand-in Mender chart ----------------------------

@pytest.fixture(scope="module")
def chart_repo(tmp_path_factory, helm3):
    """`helm package` + `helm repo index` served on 127.0.0.1, so `helm search repo`
    finds the deployed chart version and `helm upgrade` downloads it."""
    root = tmp_path_factory.mktemp("chart-repo")
    helm_run(helm3, "package", str(STAND_IN), "-d", str(root))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    helm_run(helm3, "repo", "index", str(root), "--url", url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# --- helm (with the plugin installed) pointed at the API server -------------------------------

@pytest.fixture(scope="module", params=["helm3", "helm4"])
def hx(request, kube_cluster, plugin_installs, chart_repo, tmp_path_factory) -> Helm:
    inst = plugin_installs(request.param)
    home = tmp_path_factory.mktemp(f"e2e-{request.param}")
    env = dict(inst["env"], KUBECONFIG=str(kube_cluster.kubeconfig),
               HELM_REPOSITORY_CONFIG=str(home / "repositories.yaml"),
               HELM_REPOSITORY_CACHE=str(home / "repository-cache"))
    for key in ("HELM_NAMESPACE", "HELM_KUBECONTEXT", "HELM_DEBUG"):
        env.pop(key, None)
    h = Helm(request.param, inst["helm"], env, kube_cluster)
    h("repo", "add", "mender", chart_repo)
    return h


@pytest.fixture
def ns(hx) -> str:
    """A namespace of its own for each test (and helm version)."""
    name = f"{hx.name}-{uuid.uuid4().hex[:8]}"
    hx.cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": name}})
    return name


def install_mender(hx: Helm, ns: str, values: Path = VALUES, chart: str = "mender/mender") -> None:
    args = ["install", "mender", chart, "-n", ns, "-f", str(values)]
    if chart == "mender/mender":
        args += ["--version", "5.1.0"]
    hx(*args)


def deployment_env(hx: Helm, ns: str) -> dict[str, str]:
    dep = hx.cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/deployments")
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def secret_value(hx: Helm, ns: str, name: str, key: str) -> str:
    data = hx.cluster.get(f"/api/v1/namespaces/{ns}/secrets/{name}")["data"]
    return base64.b64decode(data[key]).decode()


def plugin_error(proc: subprocess.CompletedProcess) -> str:
    """The plugin's one error line. Helm adds its own line about the plugin's exit
    status; anything else on stderr is a failure."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    ours = [ln for ln in lines if not re.match(r'^Error: plugin "mender-backup" exited with error', ln)]
    assert len(ours) == 1 and ours[0].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return ours[0]


def flatten(d, prefix=()) -> dict[tuple, object]:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


# --- install -------------------------------------------------------------------------------------

def test_install_creates_the_backup_cronjob(hx, ns):
    install_mender(hx, ns)
    proc = hx("-n", ns, "mender-backup", "install", "mender", "--destination", "s3://mender-backups/prod",
              "--schedule", "15 2 * * *", "--image", "registry.example.com/mender-backup:1.2.3")
    assert "STATUS: deployed" in proc.stdout
    assert hx.status("mender-backup", ns)["info"]["status"] == "deployed"

    manifest = hx("get", "manifest", "mender-backup", "-n", ns).stdout
    kinds = sorted(d["kind"] for d in YAML(typ="safe").load_all(manifest) if d)
    assert kinds == ["CronJob", "ServiceAccount"]  # no Secret: no credential was copied

    cj = hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs/mender-backup")
    spec = cj["spec"]
    assert spec["schedule"] == "15 2 * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "registry.example.com/mender-backup:1.2.3"
    assert c["args"] == ["backup", "--json"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert refs["MONGODB_URL"] == {"name": "mongodb-common", "key": "MONGO_URL"}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "artifacts-storage", "key": "AWS_AUTH_KEY"}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "artifacts-storage", "key": "AWS_AUTH_SECRET"}
    assert refs["MENDER_BACKUP_ARTIFACTS_BUCKET"] == {"name": "artifacts-storage", "key": "AWS_BUCKET"}
    plain = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert plain["MENDER_BACKUP_DESTINATION"] == "s3://mender-backups/prod"
    # every Secret key the CronJob reads exists: the stand-in Mender release made them
    for ref in refs.values():
        secret_value(hx, ns, ref["name"], ref["key"])
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    hx.cluster.get(f"/api/v1/namespaces/{ns}/serviceaccounts/{pod['serviceAccountName']}")
    # no credential of the Mender values anywhere in the CronJob
    assert "minio-Secret-Key-1" not in json.dumps(cj) and "S3cr3t" not in json.dumps(cj)


# --- run -----------------------------------------------------------------------------------------

def test_run_creates_a_job_from_the_cronjob(hx, ns):
    install_mender(hx, ns)
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", "s3://mender-backups/prod")
    proc = hx("-n", ns, "mender-backup", "run", "mender")
    m = re.fullmatch(r"job\.batch/(\S+) created in namespace (\S+)", proc.stdout.strip())
    assert m and m.group(2) == ns, proc.stdout
    job = hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{m.group(1)}")
    cj = hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs/mender-backup")
    assert job["metadata"]["name"].startswith("mender-backup-manual-")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "mender-backup",
        "uid": cj["metadata"]["uid"], "controller": True}]
    want = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    got = job["spec"]["template"]["spec"]
    for key in ("containers", "securityContext", "serviceAccountName", "automountServiceAccountToken",
                "restartPolicy", "volumes"):
        assert got[key] == want[key], key
    assert job["spec"]["backoffLimit"] == cj["spec"]["jobTemplate"]["spec"]["backoffLimit"]
    # a Job's selector was generated by the API server: it was really created, not just printed
    assert "controller-uid" in json.dumps(job["spec"]["selector"])


def test_run_without_backup_release_is_one_line(hx, ns):
    install_mender(hx, ns)
    proc = hx("-n", ns, "mender-backup", "run", "mender", check=False)
    assert proc.returncode == 3
    assert "helm get manifest: release: not found" in plugin_error(proc)


# --- restore -------------------------------------------------------------------------------------

def _collections(client) -> dict[str, int]:
    system = {"admin", "local", "config"}
    return {f"{db}.{c}": client[db][c].count_documents({})
            for db in sorted(set(client.list_database_names()) - system)
            for c in sorted(client[db].list_collection_names())}


def _objects(s3, bucket: str) -> dict[str, int]:
    return {o["Key"]: o["Size"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in p.get("Contents", [])}


def test_restore_repoints_the_release_and_rollback_restores_it(hx, ns, new_mongodb, minio, bucket):
    s3 = minio.client()
    # the Mender installation and its backup release
    source = new_mongodb()
    mender_data.seed_mongo(source.client(), scale=0.1)
    mender_data.seed_bucket(s3, bucket, count=6)
    backups = f"backups-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=backups)
    dest = f"s3://{backups}/mender"
    install_mender(hx, ns)
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", dest)
    before_env = deployment_env(hx, ns)

    # a real backup, as the CronJob's pod would take it
    r = cli.run("backup", "--artifacts-bucket", bucket, "--json",
                env={**minio.env(), "MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": dest})
    backup_id = cli.result_of(r)["id"]

    # restore into a new MongoDB and a new bucket, through helm
    target = new_mongodb()
    new_bucket = f"restored-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=new_bucket)
    proc = hx("-n", ns, "mender-backup", "restore", "mender", "--backup", backup_id,
              "--mongodb-url", target.url, "--bucket", new_bucket, "--yes", env=minio.env())
    assert _collections(target.client()) == _collections(source.client()) != {}
    assert _objects(s3, new_bucket) == _objects(s3, bucket) != {}
    m = re.search(r"\brollback mender (\d+) --namespace (\S+)", proc.stdout)
    assert m and m.group(1) == "1" and m.group(2) == ns, proc.stdout + proc.stderr
    assert "previous revision is 1" in proc.stderr

    # revision 2: the same user values but for the two keys
    status = hx.status("mender", ns)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    meta = json.loads(hx("get", "metadata", "mender", "-n", ns, "-o", "json").stdout)
    assert (meta["chart"], meta["version"], meta["revision"]) == ("mender", "5.1.0", 2)  # same chart version
    old, new = flatten(hx.values("mender", ns, 1)), flatten(hx.values("mender", ns, 2))
    assert set(old) == set(new)
    assert {k for k in old if old[k] != new[k]} == {("global", "mongodb", "URL"), ("global", "s3", "AWS_BUCKET")}
    assert new[("global", "mongodb", "URL")] == target.url and new[("global", "s3", "AWS_BUCKET")] == new_bucket
    # and Mender's Deployment (and Secret) as the API server holds them now
    env = deployment_env(hx, ns)
    assert env["DEPLOYMENTS_MONGO_URL"] == target.url and env["DEPLOYMENTS_AWS_BUCKET"] == new_bucket
    assert {k: v for k, v in env.items() if not k.startswith(("DEPLOYMENTS_MONGO", "DEPLOYMENTS_AWS_BUCKET"))} == \
        {k: v for k, v in before_env.items() if not k.startswith(("DEPLOYMENTS_MONGO", "DEPLOYMENTS_AWS_BUCKET"))}
    assert secret_value(hx, ns, "mongodb-common", "MONGO_URL") == target.url
    assert secret_value(hx, ns, "artifacts-storage", "AWS_BUCKET") == new_bucket

    # the printed rollback brings the old values back
    hx("rollback", "mender", m.group(1), "-n", ns)
    assert hx.status("mender", ns)["version"] == 3
    assert flatten(hx.values("mender", ns, 3)) == old
    assert deployment_env(hx, ns) == before_env
    assert secret_value(hx, ns, "artifacts-storage", "AWS_BUCKET") == before_env["DEPLOYMENTS_AWS_BUCKET"]


# --- refusals: one line on stderr, non-zero exit, nothing changed ------------------------------------

def test_restore_refuses_unknown_release(hx, ns):
    proc = hx("-n", ns, "mender-backup", "restore", "nope", "--backup", "latest", "--bucket", "b", "--yes",
              check=False)
    assert proc.returncode == 3
    assert "helm get metadata: release: not found" in plugin_error(proc)


def test_restore_refuses_release_not_deployed(hx, ns, tmp_path):
    install_mender(hx, ns)
    broken = shutil.copytree(STAND_IN, tmp_path / "broken")
    (broken / "templates" / "bad.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Valid_Name\ndata: {}\n")
    up = hx("upgrade", "mender", str(broken), "-n", ns, "-f", str(VALUES), check=False)
    assert up.returncode != 0
    assert hx.status("mender", ns)["info"]["status"] == "failed"
    proc = hx("-n", ns, "mender-backup", "restore", "mender", "--backup", "latest", "--bucket", "b", "--yes",
              check=False)
    assert proc.returncode == 4
    assert "release mender is failed, not deployed" in plugin_error(proc)
    assert hx.status("mender", ns)["version"] == 2  # nothing was upgraded


def test_restore_refuses_chart_not_in_any_repo(hx, ns, tmp_path):
    other = shutil.copytree(STAND_IN, tmp_path / "mender")
    chart_yaml = other / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 5.1.0", "version: 9.9.9"))
    install_mender(hx, ns, chart=str(other))
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", "s3://mender-backups/prod")
    proc = hx("-n", ns, "mender-backup", "restore", "mender", "--backup", "latest", "--bucket", "b", "--yes",
              check=False)
    assert proc.returncode == 3
    assert plugin_error(proc) == ("Error: chart mender 9.9.9 is not in any local helm repo: "
                                  "`helm repo add`/`helm repo update`, or pass --chart")
    assert hx.status("mender", ns)["version"] == 1
