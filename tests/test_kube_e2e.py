"""`helm mender-backup install`, `run` and the restore's refusals, end to end: the plugin
installed through the real helm v3 and v4, a REAL Mender chart (mender-helm 8.2.1 and
others, tests/mender_release.py) installed into a real Kubernetes API (etcd +
kube-apiserver, testenv/kube.py). No kubelet runs: objects are created, validated and
stored by the API server, but no pod starts (tests/test_node.py runs pods). Objects are
read back with the admin token, not through our code."""

from __future__ import annotations

import json
import re

import pytest

from tests.mender_release import NO_PODS, install_mender, mender_values, plugin_error, read_yaml, secret

VERSION = "8.2.1"


@pytest.fixture(params=["helm3", "helm4"])
def hx(request, helm_e2e):
    return helm_e2e(request.param)


@pytest.fixture
def ns(hx) -> str:
    return hx.new_namespace()


def cronjob_env(hx, ns: str, name: str = "mender-backup") -> tuple[dict, dict, dict]:
    """(the CronJob, its secretKeyRefs by env name, its plain env values)"""
    cj = hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs/{name}")
    (c,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    plain = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    return cj, refs, plain


def assert_refs_exist(hx, ns: str, refs: dict) -> None:
    """A secretKeyRef to a key the Secret lacks keeps the pod from ever starting."""
    for env, ref in refs.items():
        assert ref["key"] in secret(hx, ns, ref["name"]), f"{env}: {ref} does not exist"


# --- install ----------------------------------------------------------------------------------

def test_install_creates_the_backup_cronjob(hx, ns, minio, tmp_path):
    install_mender(hx, ns, VERSION, mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/",
                                                  minio=minio, bucket="mender-artifacts"), tmp_path)
    proc = hx("-n", ns, "mender-backup", "install", "mender", "--destination", "s3://mender-backups/prod",
              "--schedule", "15 2 * * *", "--image", "registry.example.com/mender-backup:1.2.3")
    assert "STATUS: deployed" in proc.stdout
    manifest = hx("get", "manifest", "mender-backup", "-n", ns).stdout
    assert sorted(d["kind"] for d in read_yaml(manifest)) == ["CronJob", "ServiceAccount"]  # no credential copied

    cj, refs, plain = cronjob_env(hx, ns)
    spec = cj["spec"]
    assert spec["schedule"] == "15 2 * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "registry.example.com/mender-backup:1.2.3" and c["args"] == ["backup", "--json"]
    assert refs["MONGODB_URL"] == {"name": "mongodb-common", "key": "MONGO_URL"}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "artifacts-storage", "key": "AWS_AUTH_KEY"}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "artifacts-storage", "key": "AWS_AUTH_SECRET"}
    assert refs["MENDER_BACKUP_ARTIFACTS_BUCKET"] == {"name": "artifacts-storage", "key": "AWS_BUCKET"}
    assert_refs_exist(hx, ns, refs)
    assert plain["MENDER_BACKUP_DESTINATION"] == "s3://mender-backups/prod"
    # what each backup records of the Mender it was taken from
    meta = json.loads(hx("get", "metadata", "mender", "-n", ns, "-o", "json").stdout)
    assert plain["MENDER_BACKUP_MENDER_CHART_VERSION"] == VERSION
    assert plain["MENDER_BACKUP_MENDER_APP_VERSION"] == meta["appVersion"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["automountServiceAccountToken"] is False
    hx.cluster.get(f"/api/v1/namespaces/{ns}/serviceaccounts/{pod['serviceAccountName']}")
    assert minio.secret_key not in json.dumps(cj)


def test_install_for_an_irsa_release_uses_its_service_account_and_no_static_keys(hx, ns, minio, tmp_path):
    """An IRSA install has no AWS_AUTH_KEY/AWS_AUTH_SECRET in artifacts-storage: the CronJob
    must reference only keys the Mender chart created, and run as the role's service account."""
    values = mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/", minio=minio,
                           bucket="mender-artifacts", **{"global.s3.AWS_SERVICE_ACCOUNT_NAME": "mender-s3"})
    install_mender(hx, ns, VERSION, values, tmp_path)
    assert "AWS_AUTH_KEY" not in secret(hx, ns, "artifacts-storage")      # the chart's rule, checked
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", "s3://mender-backups/prod")
    cj, refs, _ = cronjob_env(hx, ns)
    assert "AWS_ACCESS_KEY_ID" not in refs and "AWS_SECRET_ACCESS_KEY" not in refs
    assert_refs_exist(hx, ns, refs)
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mender-s3"
    assert "ServiceAccount" not in [d["kind"] for d in read_yaml(hx("get", "manifest", "mender-backup", "-n", ns).stdout)]


def test_install_reads_the_bucket_from_storage_bucket_when_that_is_all_there_is(hx, ns, minio, tmp_path):
    hx.cluster.request("POST", f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-s3"},
        "stringData": {"STORAGE_BUCKET": "mender-artifacts", "AWS_URI": minio.endpoint, "AWS_REGION": "us-east-1",
                       "AWS_AUTH_KEY": minio.access_key, "AWS_AUTH_SECRET": minio.secret_key}})
    values = mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/", minio=minio,
                           bucket="mender-artifacts", **{"global.s3.existingSecret": "my-s3"})
    install_mender(hx, ns, VERSION, values, tmp_path)
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", "s3://mender-backups/prod")
    _, refs, _ = cronjob_env(hx, ns)
    assert refs["MENDER_BACKUP_ARTIFACTS_BUCKET"] == {"name": "my-s3", "key": "STORAGE_BUCKET"}
    assert_refs_exist(hx, ns, refs)


# --- run ----------------------------------------------------------------------------------------

def test_run_creates_a_job_from_the_cronjob(hx, ns, minio, tmp_path):
    install_mender(hx, ns, VERSION, mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/",
                                                  minio=minio, bucket="mender-artifacts"), tmp_path)
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
    # a Job's selector was generated by the API server: it was really created, not just printed
    assert "controller-uid" in json.dumps(job["spec"]["selector"])


def test_run_without_backup_release_is_one_line(hx, ns, minio, tmp_path):
    install_mender(hx, ns, VERSION, mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/",
                                                  minio=minio, bucket="mender-artifacts"), tmp_path)
    proc = hx("-n", ns, "mender-backup", "run", "mender", check=False)
    assert proc.returncode == 3
    assert "helm get manifest: release: not found" in plugin_error(proc)


# --- restore refusals: one line, non-zero exit, nothing changed -----------------------------------

def test_restore_refuses_unknown_release(hx, ns):
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "nope", "--backup", "latest", "--bucket", "b", "--yes",
              check=False)
    assert proc.returncode == 3
    assert "helm get metadata: release: not found" in plugin_error(proc)


def test_restore_refuses_release_not_deployed(hx, ns, minio, tmp_path):
    values = mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/", minio=minio,
                           bucket="mender-artifacts")
    install_mender(hx, ns, VERSION, values, tmp_path)
    up = hx("upgrade", "mender", "mender/mender", "--version", VERSION, "-n", ns, "--reuse-values",
            "--set", "gui.replicas=-1", check=False)      # the API server refuses the Deployment
    assert up.returncode != 0 and hx.status("mender", ns)["info"]["status"] == "failed"
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", "latest", "--bucket", "b", "--yes",
              check=False)
    assert proc.returncode == 4
    assert "release mender is failed, not deployed" in plugin_error(proc)
    assert hx.status("mender", ns)["version"] == 2


def test_restore_refuses_chart_not_in_any_repo(hx, ns, minio, tmp_path):
    values = mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/", minio=minio,
                           bucket="mender-artifacts")
    install_mender(hx, ns, VERSION, values, tmp_path)
    (tmp_path / "no-repos.yaml").write_text("apiVersion: v1\nrepositories: []\n")
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", "latest", "--destination",
              f"file://{tmp_path}/nothing", "--yes", check=False,
              env={"HELM_REPOSITORY_CONFIG": str(tmp_path / "no-repos.yaml")})
    assert proc.returncode == 3
    assert plugin_error(proc) == (f"Error: chart mender {VERSION} is not in any local helm repo: "
                                  f"`helm repo add`/`helm repo update`, or pass --chart")
    assert hx.status("mender", ns)["version"] == 1


def test_restore_of_an_azure_release_naming_no_account_is_refused_before_anything(hx, ns, minio, tmp_path):
    """A connection string without AccountName=: the container's URL cannot be made (its
    round trips: tests/test_azure_release.py)."""
    values = mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/", minio=minio,
                           bucket="mender-artifacts", **{"global.storage": "azure",
                                                         "global.azure.CONTAINER_NAME": "artifacts",
                                                         "global.azure.AUTH_CONNECTION_STRING": "x"})
    install_mender(hx, ns, VERSION, values, tmp_path)
    before = hx.cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments")["items"]
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", "latest", "--bucket", "b", "--yes",
              check=False)
    assert proc.returncode == 2
    assert "stores artifacts in Azure but names no storage account" in plugin_error(proc)
    assert "nothing was changed" in plugin_error(proc)
    after = hx.cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments")["items"]
    assert [d["spec"]["replicas"] for d in after] == [d["spec"]["replicas"] for d in before]
    assert hx.status("mender", ns)["version"] == 1


def test_restore_refuses_a_chart_that_is_not_mender(hx, ns, tmp_path):
    from tests.helmutil import CHART
    hx("install", "mender", str(CHART), "-n", ns, "--set", "mongodb.url=mongodb://x:1/",
       "--set", "destination.url=s3://backups/p", "--set", "mongodb.existingSecret=")
    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", "latest", "--yes", check=False)
    assert proc.returncode == 2
    assert "only the Mender chart (mender-helm) 5.x to 8.x is supported" in plugin_error(proc)


@pytest.mark.parametrize("args, fragment", [
    (["--schedule", "every night"], "bad schedule"),
    (["--schedule", "0 0 * * 7"], "not a valid day of week"),
    (["--destination", "ftp://x/y"], "unsupported destination"),
])
def test_install_refuses_bad_input_before_any_change(hx, ns, minio, tmp_path, args, fragment):
    install_mender(hx, ns, VERSION, mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/",
                                                  minio=minio, bucket="mender-artifacts"), tmp_path)
    base = ["--destination", "s3://mender-backups/prod"] if "--destination" not in args else []
    proc = hx("-n", ns, "mender-backup", "install", "mender", *base, *args, check=False)
    assert proc.returncode == 2
    assert fragment in plugin_error(proc)
    assert hx("status", "mender-backup", "-n", ns, check=False).returncode != 0     # nothing installed


def test_run_dry_run_prints_a_valid_job(hx, ns, minio, tmp_path):
    import kubernetes_validate
    install_mender(hx, ns, VERSION, mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/",
                                                  minio=minio, bucket="mender-artifacts"), tmp_path)
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", "s3://mender-backups/prod")
    (job,) = read_yaml(hx("-n", ns, "mender-backup", "run", "mender", "--dry-run").stdout)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == ns
    assert job["metadata"]["name"].startswith("mender-backup-manual-")
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    assert hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"] == []     # nothing created


# --- list ---------------------------------------------------------------------------------------

def test_plugin_list_prints_the_same_rows_as_mender_backup_list(hx, ns, minio, tmp_path):
    """One listing serves both front ends: the same JSON rows (states, consistency, keys)."""
    from datetime import datetime, timedelta, timezone

    from mender_backup.engine.repository import Repository
    from mender_backup.stores import FileStore
    from tests import manifests
    from tests.cli import result_of, run
    from tests.test_repository import put_backup

    install_mender(hx, ns, VERSION, mender_values(VERSION, mongodb_url="mongodb://mongo.example:27017/",
                                                  minio=minio, bucket="mender-artifacts"), tmp_path)
    dest = tmp_path / "dest"
    manifests.mark_hand_made(dest)
    repo = Repository(FileStore(dest, f"file://{dest}"))
    now = datetime.now(timezone.utc)
    put_backup(repo, now - timedelta(days=1), ["a"])
    put_backup(repo, now - timedelta(hours=1), raw=b"{")        # unknown: damaged
    ours = result_of(run("list", "--json", env={"MENDER_BACKUP_DESTINATION": f"file://{dest}"}))
    theirs = [json.loads(line) for line in hx("-n", ns, "mender-backup", "list", "mender", "--destination",
                                               f"file://{dest}", "--json").stdout.splitlines()
              if line.startswith("{")]
    (result,) = [e["result"] for e in theirs if e.get("event") == "result"]
    assert result == ours and [r["state"] for r in ours] == ["complete", "unknown"]
    assert "consistent" in ours[0] and "restorable_until" in ours[0]
