"""`helm mender-backup upgrade` and `rollback` up to the point where pods would have to run: the
real helm v3 and v4 with our plugin, the real Mender charts from a chart repository, the real
Kubernetes API (no kubelet: tests/mender_release.py), MongoDB and MinIO. What needs Mender's
pods running (the backup Job, the migrations, health, a real rollback) is in
tests/test_live_upgrade.py; here: the preflight (helm's own dry run renders the target chart),
its refusals, and that none of them changes anything."""

from __future__ import annotations

import pytest

from tests.mender_release import plugin_error
from tests.test_mender_restore import mender_release  # noqa: F401  (the fixture)


def revision(hx, ns: str) -> int:
    return hx.status("mender", ns)["version"]


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_dry_run_shows_the_hazards_keys_and_diff_and_changes_nothing(mender_release, minio, helm_name):
    hx, ns, *_ = mender_release(helm_name, "7.9.4")
    jobs_before = hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]
    proc = hx("-n", ns, "mender-backup", "upgrade", "mender", "mender/mender", "--version", "8.2.1",
              "--reuse-values", "--set", "deployments.replicas=2", "--dry-run", env=minio.env())
    err = proc.stderr
    assert "chart mender 7.9.4 -> mender 8.2.1, Mender v4.1.2 -> v4.1.3" in err, err
    # our hazard line and the chart's own CHANGELOG's breaking changes of 8.0.0
    assert "hazard: chart 8.x replaces the NATS subchart" in err, err
    assert "hazard: chart 8.0.0: featureGates.k8sTlsSecrets is removed" in err, err
    # the keys helm would generate anew are carried, and never shown
    assert "useradm.certs.key from Secret rsa-useradm: the signing key is kept" in err
    assert "BEGIN" not in err + proc.stdout
    assert "+deployments:" in proc.stdout and "+  replicas: 2" in proc.stdout, proc.stdout
    assert "--set <value>" in err and "replicas=2" not in err
    assert "dry run: the release was not changed" in err
    assert minio.secret_key not in err + proc.stdout
    assert revision(hx, ns) == 1
    assert hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"] == jobs_before


def test_a_downgrade_and_a_chart_that_is_not_mender_are_refused(mender_release, minio):
    from tests.helmutil import CHART
    hx, ns, *_ = mender_release("helm3", "8.2.1")
    proc = hx("-n", ns, "mender-backup", "upgrade", "mender", "mender/mender", "--version", "7.9.4", "--yes",
              env=minio.env(), check=False)
    assert proc.returncode == 2, proc.stderr
    line = plugin_error(proc)
    assert "7.9.4 is older than the release's chart 8.2.1" in line and "helm mender-backup rollback mender" in line
    proc = hx("-n", ns, "mender-backup", "upgrade", "mender", str(CHART), "--yes", env=minio.env(), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "only the Mender chart (mender-helm) 5.x to 8.x is supported" in plugin_error(proc)
    assert revision(hx, ns) == 1


def test_no_guarding_backup_no_rollback_and_no_backup_release_no_upgrade(mender_release, minio):
    """The release's scheduled backup guards no upgrade: nothing to roll back to. Without the
    backup release, the guarded upgrade has nothing to back up with: refused before anything."""
    hx, ns, *_ = mender_release("helm3", "7.9.4")
    proc = hx("-n", ns, "mender-backup", "rollback", "mender", "--yes", env=minio.env(), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "guards any upgrade of release mender" in plugin_error(proc)
    hx("uninstall", "mender-backup", "-n", ns)
    proc = hx("-n", ns, "mender-backup", "upgrade", "mender", "mender/mender", "--version", "8.2.1",
              "--destination", "s3://nowhere/x", "--yes", env=minio.env(), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "no backup release mender-backup: the guarded upgrade backs up through it" in plugin_error(proc)
    assert revision(hx, ns) == 1


def test_rollback_dry_run_finds_the_guard_and_changes_nothing(mender_release, minio):
    """A backup tagged as the upgrade's Job tags it (the same environment), the release upgraded
    once more by hand: `rollback --dry-run` names that backup, `helm rollback` to the revision it
    guards and the values diff back to it; the release, its workloads and data stay as they are."""
    from tests import cli
    from tests.mender_release import workloads
    hx, ns, source, bucket, dest, _ = mender_release("helm3", "7.9.4")
    tags = {"MENDER_BACKUP_MENDER_RELEASE": "mender", "MENDER_BACKUP_MENDER_REVISION": "1",
            "MENDER_BACKUP_MENDER_CHART_VERSION": "7.9.4", "MENDER_BACKUP_MENDER_APP_VERSION": "v4.1.2",
            "MENDER_BACKUP_UPGRADE": "20261206T000000Z", "MENDER_BACKUP_UPGRADE_TO": "8.2.1"}
    guard = cli.result_of(cli.run("backup", "--artifacts-bucket", bucket, "--json", env={
        **minio.env(), "MONGODB_URL": source.url, "MENDER_BACKUP_DESTINATION": dest, **tags}))["id"]
    hx("-n", ns, "upgrade", "mender", "mender/mender", "--version", "7.9.4", "--reuse-values",
       "--set", "deployments.replicas=2")
    before = workloads(hx, ns)
    proc = hx("-n", ns, "mender-backup", "rollback", "mender", "--dry-run", env=minio.env())
    err = proc.stderr
    assert f"restore backup {guard}" in err and "(replacing the collections the backup holds)" in err, err
    assert "rollback mender 1 --namespace" in err and "back to chart 7.9.4, Mender v4.1.2" in err, err
    assert "-  replicas: 2" in proc.stdout and "(revision 1)" in proc.stdout, proc.stdout
    assert "dry run: nothing was changed" in err
    assert revision(hx, ns) == 2
    assert {k: v["spec"].get("replicas") for k, v in workloads(hx, ns).items()} == \
        {k: v["spec"].get("replicas") for k, v in before.items()}
