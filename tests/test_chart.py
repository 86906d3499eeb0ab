"""The CronJob chart: lint, render, Kubernetes schemas, values schema, secrets.

Everything runs against the real helm v3 and v4 binaries (the `helm` fixture).
"""

from __future__ import annotations

import base64
import copy
import re

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from tests.helmutil import CHART, FIXTURES, b64, by_kind, helm_run, render

VALUES = sorted((FIXTURES / "chart-values").glob("*.yaml"))
K8S_VERSION = kubernetes_validate.latest_version()


def _validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_lint_strict_defaults(helm):
    proc = helm_run(helm, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_lint_strict_with_values(helm, values):
    proc = helm_run(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda p: p.stem if p else "defaults")
def test_rendered_manifests_match_kubernetes_schemas(helm, values):
    docs = render(helm, *(["-f", str(values)] if values else []))
    kinds = sorted(d["kind"] for d in docs)
    assert "CronJob" in kinds
    for doc in docs:
        _validate(doc)  # raises ValidationError on any schema violation


def test_validator_is_not_a_rubber_stamp(helm3):
    """The same validator rejects a CronJob with a wrong field type and an unknown field."""
    cronjob = by_kind(render(helm3), "CronJob")[0]
    bad = copy.deepcopy(cronjob)
    bad["spec"]["successfulJobsHistoryLimit"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad)
    bad = copy.deepcopy(cronjob)
    bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad)


def _pod(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def _env(doc: dict) -> dict[str, dict]:
    return {e["name"]: e for e in _pod(doc)["containers"][0]["env"]}


def test_cronjob_runs_backup_with_the_cli_contract(helm):
    docs = render(helm)
    cj = by_kind(docs, "CronJob")[0]
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    assert cj["spec"]["schedule"] == "0 3 * * *"
    container = _pod(cj)["containers"][0]
    assert container["args"] == ["backup", "--json"]
    env = _env(cj)
    # defaults: Mender's own Secrets, by reference
    assert env["MONGODB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "mongodb-common", "key": "MONGO_URL"}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "artifacts-storage", "key": "AWS_AUTH_KEY"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_AUTH_SECRET"
    assert env["MENDER_BACKUP_ARTIFACTS_BUCKET"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_BUCKET"
    assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_URI"
    assert env["MENDER_BACKUP_DESTINATION"]["value"] == "s3://mender-backup"
    assert env["MENDER_BACKUP_COMPRESSION"]["value"] == "zstd"
    assert {k: env[k]["value"] for k in env if k.startswith("MENDER_BACKUP_KEEP_")} == {
        "MENDER_BACKUP_KEEP_LAST": "7", "MENDER_BACKUP_KEEP_DAILY": "7",
        "MENDER_BACKUP_KEEP_WEEKLY": "4", "MENDER_BACKUP_KEEP_MONTHLY": "6"}
    assert not by_kind(docs, "Job"), "restore Job must be off by default"


def test_pod_security(helm):
    cj = by_kind(render(helm), "CronJob")[0]
    pod = _pod(cj)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    tmp = [v for v in pod["volumes"] if v["name"] == "tmp"][0]
    assert "emptyDir" in tmp


def test_every_knob_reaches_the_manifest(helm):
    docs = render(helm, "-f", str(FIXTURES / "chart-values" / "values-full.yaml"))
    cj = by_kind(docs, "CronJob")[0]
    assert cj["metadata"]["name"] == "mender-backup-prod"
    s = cj["spec"]
    assert (s["schedule"], s["timeZone"], s["suspend"]) == ("30 1 * * MON-SAT", "Europe/Oslo", True)
    assert (s["startingDeadlineSeconds"], s["successfulJobsHistoryLimit"], s["failedJobsHistoryLimit"]) == (600, 1, 5)
    js = s["jobTemplate"]["spec"]
    assert (js["backoffLimit"], js["activeDeadlineSeconds"], js["ttlSecondsAfterFinished"]) == (3, 7200, 86400)
    pod = _pod(cj)
    c = pod["containers"][0]
    assert c["image"] == "registry.example.com/ops/mender-backup:0.1.0-rc1"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"]["limits"]["memory"] == "2Gi"
    assert pod["serviceAccountName"] == "backup-sa"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "low"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    tmpl_meta = js["template"]["metadata"]
    assert tmpl_meta["labels"]["team"] == "platform"
    assert tmpl_meta["annotations"] == {"example.com/owner": "platform"}
    env = _env(cj)
    assert env["MENDER_BACKUP_COMPRESSION"]["value"] == "xz"
    assert env["MENDER_BACKUP_KEEP_DAILY"]["value"] == "0"
    assert "MENDER_BACKUP_KEEP_WEEKLY" not in env  # null = rule not used
    assert "MENDER_BACKUP_ARTIFACTS_BUCKET" not in env  # skipArtifacts
    assert env["AWS_S3_ADDRESSING_STYLE"]["value"] == "path"
    assert not by_kind(docs, "ServiceAccount")  # serviceAccount.create=false
    assert [v for v in pod["volumes"] if v["name"] == "tmp"][0]["emptyDir"]["sizeLimit"] == "4Gi"


SECRETS = ["Mongo-Pw-9931", "AKIA-SOURCE-7781", "source-Secret-Key-5512", "AKIA-DEST-4410",
           "dest-Secret-Key-8823", "Restore-Pw-7720"]


def test_secrets_passed_as_values_only_in_the_secret(helm):
    values = FIXTURES / "chart-values" / "values-passed-secrets.yaml"
    docs = render(helm, "-f", str(values))
    secrets = by_kind(docs, "Secret")
    assert len(secrets) == 1
    data = {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}
    assert data["MONGODB_URL"].startswith("mongodb://backup:Mongo-Pw-9931@")
    assert data["AWS_SECRET_ACCESS_KEY"] == "source-Secret-Key-5512"
    assert data["DEST_AWS_SECRET_ACCESS_KEY"] == "dest-Secret-Key-8823"
    assert "Restore-Pw-7720" in data["RESTORE_MONGODB_URL"]
    yaml = YAML(typ="safe")
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        import io
        buf = io.StringIO()
        yaml.dump(doc, buf)
        text = buf.getvalue()
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {doc['kind']}"
            assert b64(secret) not in text
    workloads = by_kind(docs, "CronJob") + by_kind(docs, "Job")
    assert len(workloads) == 2
    for doc in workloads:
        env = _env(doc)
        for name in ("MONGODB_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "MENDER_BACKUP_DEST_AWS_ACCESS_KEY_ID", "MENDER_BACKUP_DEST_AWS_SECRET_ACCESS_KEY"):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secrets[0]["metadata"]["name"]
    job_env = _env(by_kind(docs, "Job")[0])
    assert job_env["MENDER_BACKUP_RESTORE_MONGODB_URL"]["valueFrom"]["secretKeyRef"]["key"] == "RESTORE_MONGODB_URL"
    assert job_env["MENDER_BACKUP_RESTORE_ARTIFACTS_BUCKET"]["value"] == "mender-artifacts-restored"
    # plain, non-secret settings are plain values
    cj_env = _env(by_kind(docs, "CronJob")[0])
    assert cj_env["AWS_ENDPOINT_URL"]["value"] == "http://minio.minio.svc:9000"
    assert cj_env["MENDER_BACKUP_DEST_AWS_ENDPOINT_URL"]["value"] == "https://s3.eu-west-1.amazonaws.com"


@pytest.mark.parametrize("values", [None, FIXTURES / "chart-values" / "values-existing-secrets.yaml"],
                         ids=["defaults", "existing-secrets"])
def test_existing_secrets_render_no_secret(helm, values):
    docs = render(helm, *(["-f", str(values)] if values else []))
    assert not by_kind(docs, "Secret")
    for doc in by_kind(docs, "CronJob") + by_kind(docs, "Job"):
        env = _env(doc)
        assert "valueFrom" in env["MONGODB_URL"] and "valueFrom" in env["AWS_SECRET_ACCESS_KEY"]


def test_restore_job(helm):
    docs = render(helm, "-f", str(FIXTURES / "chart-values" / "values-existing-secrets.yaml"))
    job = by_kind(docs, "Job")[0]
    assert job["metadata"]["name"] == "mender-backup-restore-r1"
    c = _pod(job)["containers"][0]
    assert c["args"] == ["restore", "20240501T030000Z-ab12", "--json", "--drop"]
    env = _env(job)
    assert env["MENDER_BACKUP_RESTORE_MONGODB_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-restore-mongo", "key": "MONGO_URL"}
    assert env["MENDER_BACKUP_DESTINATION"]["value"] == "file:///backups"
    assert {"name": "backups", "mountPath": "/backups"} in c["volumeMounts"]
    assert job["spec"]["backoffLimit"] == 0


def test_oplog_cronjob_only_when_asked(helm):
    assert [cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            for cj in by_kind(render(helm), "CronJob")] == ["backup"]
    docs = render(helm, "--set", "oplog.enabled=true", "--set", "oplog.schedule=*/2 * * * *",
                  "--set", "oplog.activeDeadlineSeconds=100")
    backup, oplog = sorted(by_kind(docs, "CronJob"), key=lambda d: d["metadata"]["name"])
    for doc in docs:
        _validate(doc)
    assert oplog["metadata"]["name"] == "mender-backup-oplog"
    assert oplog["metadata"]["labels"]["app.kubernetes.io/component"] == "oplog"
    s = oplog["spec"]
    assert (s["schedule"], s["concurrencyPolicy"]) == ("*/2 * * * *", "Forbid")
    assert s["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 100
    container = _pod(oplog)["containers"][0]
    assert container["args"] == ["oplog", "--json", "--lock-stale-after", "160"]
    # the same pod as the backups': image, security, credentials by reference, destination
    assert _pod(oplog)["securityContext"] == _pod(backup)["securityContext"]
    assert container["securityContext"] == _pod(backup)["containers"][0]["securityContext"]
    assert container["image"] == _pod(backup)["containers"][0]["image"]
    assert _env(oplog) == _env(backup)
    proc = helm_run(helm, "lint", "--strict", str(CHART), "--set", "oplog.enabled=true")
    assert "0 chart(s) failed" in proc.stdout


# --- what the chart refuses, with a message that says why --------------------------------

BAD_VALUES = {
    "bad-cron": (["--set", "schedule=every night"], ["/schedule", "does not match pattern"]),
    "cron-4-fields": (["--set", "schedule=0 3 * *"], ["/schedule", "does not match pattern"]),
    "cron-6-fields": (["--set", "schedule=0 0 3 * * *"], ["/schedule", "does not match pattern"]),
    "bad-compression": (["--set", "compression=bzip2"], ["/compression", "zstd", "xz", "gzip", "none"]),
    "negative-keep": (["--set", "retention.keepDaily=-1"], ["/retention/keepDaily", "minimum"]),
    "unknown-top-key": (["--set", "shedule=@daily"], ["additional properties", "shedule"]),
    "unknown-nested-key": (["--set", "retention.keepYearly=1"], ["additional properties", "keepYearly"]),
    "bad-destination": (["--set", "destination.url=https://example.com/b"], ["/destination/url", "pattern"]),
    "keep-not-integer": (["--set-string", "retention.keepLast=seven"], ["/retention/keepLast"]),
    "bad-oplog-cron": (["--set", "oplog.schedule=every 5 minutes"], ["/oplog/schedule", "does not match pattern"]),
    "unknown-oplog-key": (["--set", "oplog.interval=5m"], ["additional properties", "interval"]),
    "oplog-deadline-zero": (["--set", "oplog.activeDeadlineSeconds=0"], ["/oplog/activeDeadlineSeconds", "minimum"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(helm, case):
    args, expected = BAD_VALUES[case]
    proc = helm_run(helm, "template", "r", str(CHART), *args, check=False)
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stderr, proc.stderr


CROSS_FIELD = {
    "url-and-existing-secret": (["--set", "mongodb.url=mongodb://h/db"],
                                "set either mongodb.url or mongodb.existingSecret"),
    "no-mongodb-source": (["--set", "mongodb.existingSecret="], "set mongodb.existingSecret"),
    "half-s3-credentials": (["--set", "s3.existingSecret=", "--set", "s3.accessKeyId=AK"],
                            "s3.accessKeyId and s3.secretAccessKey go together"),
    "restore-without-id": (["--set", "restore.enabled=true"], "restore.enabled needs restore.backupId"),
    "secrets-without-encryption": (["--set", "menderSecrets.enabled=true"],
                                   "menderSecrets.enabled needs encryption.existingSecret"),
    "verify-without-scratch-db": (["--set", "verifyRestore.enabled=true"],
                                  "verifyRestore.enabled needs verifyRestore.mongodb.existingSecret"),
}


@pytest.mark.parametrize("case", sorted(CROSS_FIELD))
def test_template_rejects_contradictions(helm, case):
    args, expected = CROSS_FIELD[case]
    proc = helm_run(helm, "template", "r", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


@pytest.mark.parametrize("schedule", ["@daily", "@hourly", "*/15 * * * *", "0 3 * * MON-FRI", "5 4 1,15 * ?"])
def test_schema_accepts_cron_forms(helm, schedule):
    cj = by_kind(render(helm, "--set", f"schedule={schedule}".replace(",", "\\,")), "CronJob")[0]
    assert cj["spec"]["schedule"] == schedule


def _leaf_keys(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, path + ".")
        else:
            yield path


def test_readme_documents_every_value():
    values = YAML(typ="safe").load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    # a key is documented by its own row or by a row for a parent taken as a whole (resources, ...)
    missing = [k for k in _leaf_keys(values)
               if not any(k == d or k.startswith(d + ".") for d in documented)]
    assert not missing, f"chart/README.md does not document: {missing}"


def test_schema_is_draft07_and_closed():
    import json
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    values = YAML(typ="safe").load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


def test_trust_features_reach_the_workloads(helm):
    """Encryption key, Pushgateway and webhook by reference in every workload; the Mender
    Secrets list and an API token only in the backup CronJob; the test-restore CronJob."""
    docs = render(helm, "-f", str(FIXTURES / "chart-values" / "values-trust.yaml"))
    backup, verify = sorted(by_kind(docs, "CronJob"), key=lambda d: d["metadata"]["name"])
    assert verify["metadata"]["name"] == "mender-backup-verify"
    for doc in (backup, verify):
        env = _env(doc)
        assert env["MENDER_BACKUP_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mender-backup-key",
                                                                                    "key": "key"}
        assert env["MENDER_BACKUP_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"] == {"name": "slack-webhook", "key": "url"}
        assert env["MENDER_BACKUP_PUSHGATEWAY_URL"]["value"] == "http://prometheus-pushgateway.monitoring:9091"
    b_env, v_env = _env(backup), _env(verify)
    assert b_env["MENDER_BACKUP_MENDER_SECRETS"]["value"] == \
        "rsa-useradm,rsa-device-auth,rsa-tenantadm?,api-gateway?,iot-manager-aes-key?"
    assert b_env["MENDER_BACKUP_MENDER_NAMESPACE"]["value"] == "mender-prod"
    assert _pod(backup)["automountServiceAccountToken"] is True
    assert "MENDER_BACKUP_MENDER_SECRETS" not in v_env and _pod(verify)["automountServiceAccountToken"] is False
    assert _pod(verify)["containers"][0]["args"] == ["verify", "latest", "--json"]
    assert verify["spec"]["schedule"] == "30 5 * * 0" and verify["spec"]["concurrencyPolicy"] == "Forbid"
    assert v_env["MENDER_BACKUP_VERIFY_MONGODB_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "scratch-mongodb", "key": "MONGO_URL"}
    assert v_env["MENDER_BACKUP_VERIFY_ARTIFACTS_BUCKET"]["value"] == "mender-backup-scratch"
    role = by_kind(docs, "Role")[0]
    assert role["metadata"]["namespace"] == "mender-prod"
    assert role["rules"][0]["resourceNames"] == ["api-gateway", "iot-manager-aes-key", "rsa-device-auth",
                                                 "rsa-tenantadm", "rsa-useradm"]
    assert by_kind(docs, "RoleBinding")[0]["subjects"][0]["namespace"] == "mender"


def test_trust_features_are_off_by_default(helm):
    docs = render(helm)
    assert len(by_kind(docs, "CronJob")) == 1
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding") and not by_kind(docs, "PrometheusRule")
    env = _env(by_kind(docs, "CronJob")[0])
    assert not any(k in env for k in ("MENDER_BACKUP_ENCRYPTION_KEY", "MENDER_BACKUP_MENDER_SECRETS",
                                      "MENDER_BACKUP_PUSHGATEWAY_URL", "MENDER_BACKUP_WEBHOOK_URL"))


def test_host_network_is_a_value(helm):
    """Off by default; on, both pods share the node's network and still resolve cluster names."""
    def pods(*args):
        docs = render(helm, *args)
        (cj,) = by_kind(docs, "CronJob")
        (job,) = by_kind(docs, "Job")
        return [cj["spec"]["jobTemplate"]["spec"]["template"]["spec"], job["spec"]["template"]["spec"]]

    restore = ("--set", "restore.enabled=true", "--set", "restore.backupId=latest")
    for pod in pods(*restore):
        assert "hostNetwork" not in pod and "dnsPolicy" not in pod
    for pod in pods(*restore, "--set", "hostNetwork=true"):
        assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
