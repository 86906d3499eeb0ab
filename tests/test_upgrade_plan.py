"""The parts of the upgrade guard that are plain functions: what the target chart's own
CHANGELOG says breaks between two versions (the real 8.2.1 chart's), our hazards per pair of
majors, the refusals, the command shown; and the Job wait, on a real API server."""

from __future__ import annotations

import uuid

import pytest

from mender_backup.engine.release.chart import MenderValues
from mender_backup.engine.release.target import TargetChart, breaking_changes, check_target, hazards, read_target
from mender_backup.errors import UsageError
from mender_backup.kube.helm import Helm, HelmEnv, ReleaseInfo
from tests.mender_release import chart_file


def release(version: str) -> ReleaseInfo:
    return ReleaseInfo("mender", "ns", "mender", version, 3, "deployed", "v4.1.2")


def test_breaking_changes_are_read_from_the_real_charts_changelog():
    target = read_target(Helm(HelmEnv()), str(chart_file("8.2.1")), None)
    assert (target.name, target.version, target.app_version) == ("mender", "8.2.1", "v4.1.3")
    found = breaking_changes(target.changelog, "7.9.4", "8.2.1")
    assert [v for v, _ in found] == ["8.0.0"] * 3, found
    assert found[2][1] == "NATS subchart"
    assert found[1][1].startswith("device_license_count is removed.")
    # versions outside (after, upto] contribute nothing
    assert breaking_changes(target.changelog, "8.0.0", "8.2.1") == []


def test_breaking_changes_reads_both_changelog_styles():
    text = ("## [8.0.0](x) (2026-07-20)\n### ⚠ BREAKING CHANGES\n* one\n* two\n### Features\n* not this\n"
            "## [7.0.0] - 2025\n- Remove X\n  - **BREAKING**: remove X from values\n## [6.0.0]\n* old\n")
    assert breaking_changes(text, "6.9.0", "8.0.0") == [("8.0.0", "one"), ("8.0.0", "two"),
                                                         ("7.0.0", "remove X from values")]


def test_hazards_name_what_the_pair_of_versions_changes():
    mv = MenderValues({"mongodb": {"enabled": True}}, 7)
    lines = hazards(release("7.9.4"), 7, TargetChart("x", "mender", "8.2.1", "v4.1.3"), mv)
    assert any("replaces the NATS subchart" in h for h in lines)
    assert any("embedded MongoDB must be turned off" in h for h in lines)
    assert hazards(release("8.1.0"), 8, TargetChart("x", "mender", "8.2.1", "v4.1.3"), MenderValues({}, 8)) == []
    five = hazards(release("5.13.1"), 5, TargetChart("x", "mender", "8.2.1", "v4.1.3"), MenderValues({}, 5))
    assert any("generate a new signing key" in h for h in five) and any("crosses 3 chart majors" in h for h in five)


@pytest.mark.parametrize("target, force, refused", [
    (TargetChart("x", "mender", "7.9.4", ""), False, "older than the release's chart 8.2.1"),
    (TargetChart("x", "mender", "7.9.4", ""), True, None),
    (TargetChart("x", "mender", "9.0.0", ""), False, "5.x to 8.x is supported"),
    (TargetChart("x", "mender-backup", "8.2.1", ""), False, "only the Mender chart"),
    (TargetChart("x", "mender", "8.2.1", ""), False, None),
])
def test_check_target(target, force, refused):
    if refused is None:
        check_target(release("8.2.1"), target, force)
        return
    with pytest.raises(UsageError, match=refused):
        check_target(release("8.2.1"), target, force)


def test_wait_job_follows_the_jobs_conditions(kube_cluster, tmp_path):
    """Running until a Complete or Failed condition; a failure names the logs command; the
    timeout too (a clock that moves 1 s per reading; the sleeps are counted, not slept)."""
    from mender_backup.kube import jobs
    from mender_backup.kube.connection import Kube
    from mender_backup.errors import MenderBackupError
    from tests.test_kube_client import kubeconfig
    ns = f"jobs-{uuid.uuid4().hex[:6]}"
    kube_cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": ns}})
    kube = Kube.from_env({"KUBECONFIG": str(kubeconfig(tmp_path / "kc", kube_cluster, {"token": kube_cluster.token}))})
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    for name in ("ok", "bad", "slow"):
        kube_cluster.request("POST", path, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                                            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                                                {"name": "c", "image": "busybox"}]}}}})

    def condition(name: str, kind: str, reason: str = "", message: str = "") -> None:
        obj = kube_cluster.get(f"{path}/{name}")
        now = "2026-12-06T00:00:00Z"
        conds = [{"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now}]
        if kind == "Complete":
            conds.insert(0, {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now})
        elif kind == "Failed":
            conds.insert(0, {"type": "FailureTarget", "status": "True", "reason": reason, "lastTransitionTime": now})
        obj["status"] = {"conditions": conds, "startTime": now, **({"completionTime": now} if kind == "Complete" else {})}
        kube_cluster.request("PUT", f"{path}/{name}/status", obj)

    condition("ok", "Complete")
    condition("bad", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    jobs.wait_job(kube, ns, "ok", 0)
    with pytest.raises(MenderBackupError, match=rf"Job {ns}/bad failed \(BackoffLimitExceeded: Job has reached.*"
                                                rf"see kubectl -n {ns} logs job/bad"):
        jobs.wait_job(kube, ns, "bad", 0)
    t, slept = iter(range(100)), []
    with pytest.raises(MenderBackupError, match=rf"did not finish within 3s: see kubectl -n {ns} logs job/slow"):
        jobs.wait_job(kube, ns, "slow", 3, clock=lambda: next(t), sleep=slept.append)
    assert len(slept) == 2


def test_what_cannot_change_in_place_is_found_in_the_real_charts(helm3, tmp_path):
    """7.9.4 -> 8.2.1 (the values the live tests run): NATS's StatefulSet gets another selector
    and serviceName; nothing else of the release."""
    from mender_backup.engine.release.immutable import replaced
    from testenv.mender_cluster import RECIPE, UPGRADE_FROM
    from tests.helmutil import helm_run
    url = ["--set", "global.mongodb.URL=mongodb://mongo:27017/"]
    old = helm_run(helm3, "template", "mender", str(chart_file("7.9.4")), "-f", str(UPGRADE_FROM.values), *url).stdout
    new = helm_run(helm3, "template", "mender", str(chart_file("8.2.1")), "-f", str(RECIPE / "values.yaml"), *url).stdout
    assert [(str(r), r.fields, r.holds_data) for r in replaced(old, new)] == [
        ("statefulset/mender-nats", ("selector", "serviceName"), False)]
    assert replaced(new, new) == []


def test_a_statefulset_holding_mongodb_is_marked_as_data():
    from mender_backup.engine.release.immutable import replaced
    sts = ("kind: StatefulSet\nmetadata:\n  name: mender-mongodb\n  labels:\n    app.kubernetes.io/component: mongodb\n"
           "spec:\n  serviceName: {}\n")
    [r] = replaced(sts.format("a"), sts.format("b"))
    assert (str(r), r.fields, r.holds_data) == ("statefulset/mender-mongodb", ("serviceName",), True)


def test_health_probes_are_the_charts_readiness_endpoints_through_their_services(helm3):
    """One per Mender service of 8.2.1, on the Service that selects its pods."""
    from mender_backup.kube.probes import probes
    from testenv.mender_cluster import RECIPE
    from tests.helmutil import helm_run
    out = helm_run(helm3, "template", "mender", str(chart_file("8.2.1")), "-f", str(RECIPE / "values.yaml"),
                   "--set", "global.mongodb.URL=mongodb://mongo:27017/").stdout
    found = {p.workload: str(p) for p in probes(out)}
    assert len(found) == 8, found
    assert found["deployment/mender-useradm"] == "mender-useradm:8080/api/internal/v1/useradm/health"
    assert found["deployment/mender-workflows-server"] == "mender-workflows-server:8080/api/v1/health"
    assert "deployment/mender-workflows-worker" not in found       # no HTTP readiness probe, no Service


@pytest.mark.parametrize("text, seconds", [("5m0s", 300), ("90s", 90), ("1h", 3600), ("1h30m", 5400), (None, 300)])
def test_helm_timeouts_are_read_as_go_durations(text, seconds):
    from mender_backup.kube.helm import go_duration
    assert go_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "m", "-5s", ""])
def test_a_timeout_helm_would_refuse_is_refused(text):
    from mender_backup.kube.helm import go_duration
    if text == "":
        assert go_duration(text) == 300          # unset: helm's default
        return
    with pytest.raises(UsageError, match="not a duration like 5m0s"):
        go_duration(text)


def test_a_rehearsal_job_reads_the_scratch_mongodb_and_is_no_hook(helm3):
    """The real 8.2.1 migration Jobs (helm template's hooks): renamed, no helm hook annotation,
    every reference to a MongoDB Secret now to the rehearsal's, in helm's order."""
    from mender_backup.engine.release.rehearsal import LABEL, migration_jobs, rehearsal_job
    from ruamel.yaml import YAML
    from testenv.mender_cluster import RECIPE
    from tests.helmutil import helm_run
    out = helm_run(helm3, "template", "mender", str(chart_file("8.2.1")), "-f", str(RECIPE / "values.yaml"),
                   "--set", "global.mongodb.URL=mongodb://mongo:27017/").stdout
    docs = [d for d in YAML(typ="safe").load_all(out) if isinstance(d, dict) and d.get("kind") == "Job"]
    hooks = [{"kind": "Job", "name": d["metadata"]["name"], "events": ["pre-install", "pre-upgrade"],
              "weight": int(d["metadata"]["annotations"]["helm.sh/hook-weight"]),
              "manifest": yaml_text(d)} for d in reversed(docs)]
    jobs = migration_jobs(hooks)
    assert [j["metadata"]["name"] for j in jobs] == sorted(d["metadata"]["name"] for d in docs)
    j = rehearsal_job(jobs[0], "20261206T210000Z", "scratch", {"mongodb-common", "mongodb-common-prerelease"})
    assert j["metadata"]["name"] == "mender-deployments-migration-r20261206t210000z"
    assert not any(k.startswith("helm.sh/") for k in j["metadata"]["annotations"])
    assert j["metadata"]["labels"][LABEL] == "20261206t210000z"
    refs = [e["secretRef"]["name"] for c in j["spec"]["template"]["spec"]["containers"] for e in c["envFrom"]]
    assert refs == ["scratch"]
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"] == \
        "mongodb-common-prerelease"                  # the rendered Job itself is left as it was


def yaml_text(doc) -> str:
    import io
    from ruamel.yaml import YAML
    buf = io.StringIO()
    YAML(typ="safe").dump(doc, buf)
    return buf.getvalue()


def test_a_helm_error_with_several_causes_keeps_them_on_its_one_line():
    """helm's "pre-upgrade hooks failed: 1 error occurred:" is followed by each cause on a line of
    its own (as helm prints a hook that timed out): the one line keeps them; before, the failed
    upgrade of tests/test_live_upgrade.py said only "1 error occurred:"."""
    import subprocess
    from mender_backup.kube.helm import _helm_error
    stderr = ("Error: UPGRADE FAILED: pre-upgrade hooks failed: 1 error occurred:\n"
              "\t* timed out waiting for the condition\n\n")
    err = _helm_error(["helm", "upgrade", "mender"], subprocess.CompletedProcess([], 1, "", stderr))
    assert str(err) == ("helm upgrade mender: UPGRADE FAILED: pre-upgrade hooks failed: 1 error occurred: "
                        "* timed out waiting for the condition")
