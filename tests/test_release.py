"""The release side of the helm plugin (engine/release, kube/helm.py) without a cluster: the values rewrite (byte-exact), helm command
building, HELM_* flags, what the Mender charts need (engine/release/chart.py), the companion
values, chart resolution through the real `helm search repo` over the real Mender
charts, and the rewritten values reaching the real chart's Secrets (`helm template`)."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from mender_backup.engine.release.azure_location import AzureLocation
from mender_backup.stores.settings import account_in
from mender_backup.engine.release import chart as mender, companion, values, values_diff
from mender_backup.kube import helm as runner
from mender_backup.errors import ConflictError, NotFoundError, UnreachableError, UsageError
from tests.helmutil import FIXTURES, by_kind, helm_run, render

NEW_URL = "mongodb://mender:N3w-Pw-2025@mongo-restored.data.svc:27017/?replicaSet=rs1"
NEW_BUCKET = "mender-artifacts-restored"
BOTH = {mender.MONGODB_URL: NEW_URL, mender.BUCKET: NEW_BUCKET}


def _changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    """Lines only in old, lines only in new, when the line count is unchanged."""
    o, n = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(o) == len(n)
    pairs = [(a, b) for a, b in zip(o, n) if a != b]
    return [a for a, _ in pairs], [b for _, b in pairs]


def test_rewrite_changes_exactly_two_lines_of_a_commented_anchored_file():
    old = (FIXTURES / "mender-values.yaml").read_text()
    new = values.rewrite_values(old, BOTH)
    before, after = _changed_lines(old, new)
    assert len(before) == 2
    # quoting and trailing comments of the edited lines are kept
    assert after[0] == f'    URL: "{NEW_URL}"  # rotated 2024-05\n'
    assert after[1] == f"    AWS_BUCKET: '{NEW_BUCKET}'  # single quotes kept\n"
    data = values.load_values(new)
    assert data["global"]["mongodb"]["URL"] == NEW_URL
    assert data["global"]["s3"]["AWS_BUCKET"] == NEW_BUCKET
    # the anchored s3 mapping is shared: its alias sees the new bucket too
    assert data["workflows"]["s3"]["AWS_BUCKET"] == NEW_BUCKET
    assert data["deployments"]["resources"]["limits"]["memory"] == "256Mi"


def test_rewrite_of_helm_get_values_output():
    """`helm get values -o yaml` output: sorted keys, unindented sequences."""
    old = (FIXTURES / "mender-values-helm-output.yaml").read_text()
    new = values.rewrite_values(old, BOTH)
    before, after = _changed_lines(old, new)
    assert after == [f"    URL: {NEW_URL}\n", f"    AWS_BUCKET: {NEW_BUCKET}\n"]


def test_rewrite_only_one_key():
    old = (FIXTURES / "mender-values.yaml").read_text()
    new = values.rewrite_values(old, {mender.BUCKET: NEW_BUCKET})
    before, after = _changed_lines(old, new)
    assert len(after) == 1 and NEW_BUCKET in after[0]


def test_rewrite_keeps_anchor_and_replaces_alias():
    old = (FIXTURES / "mender-values-anchored-url.yaml").read_text()
    new = values.rewrite_values(old, BOTH)
    before, after = _changed_lines(old, new)
    assert after == [f"    URL: &mongo_url {NEW_URL}\n", f"    AWS_BUCKET: {NEW_BUCKET}\n"]
    data = values.load_values(new)
    assert data["auditlogs"]["env"]["AUDITLOGS_MONGO_URL"] == NEW_URL  # follows the anchor
    assert data["shared"]["bucket"] == "mender-artifacts"  # the aliased anchor is untouched


def test_rewrite_adds_missing_keys_inside_global():
    old = (FIXTURES / "mender-values-partial-global.yaml").read_text()
    new = values.rewrite_values(old, BOTH)
    o, n = old.splitlines(), new.splitlines()
    added = [ln for ln in n if ln not in o]
    assert added == [f"    AWS_BUCKET: {NEW_BUCKET}", "  mongodb:", f"    URL: {NEW_URL}"]
    # every old line is still there, in order
    it = iter(n)
    assert all(line in it for line in o)
    # AWS_BUCKET lands in the s3 block, mongodb at the end of global (before `gui:`)
    assert n.index(f"    AWS_BUCKET: {NEW_BUCKET}") < n.index('  url: "https://mender.example.com"')
    assert n.index("  mongodb:") < n.index("gui:")
    data = values.load_values(new)
    assert data["global"]["s3"] == {"AWS_REGION": "eu-west-1", "AWS_BUCKET": NEW_BUCKET}
    assert data["global"]["enterprise"] is True and data["gui"]["enabled"] is True


def test_rewrite_adds_global_when_absent():
    old = (FIXTURES / "mender-values-no-global.yaml").read_text()
    new = values.rewrite_values(old, BOTH)
    assert new.startswith(old)  # nothing before changes
    assert new[len(old):] == (f"global:\n  mongodb:\n    URL: {NEW_URL}\n"
                              f"  s3:\n    AWS_BUCKET: {NEW_BUCKET}\n")
    assert values.load_values(new)["deployments"]["replicas"] == 2


@pytest.mark.parametrize("old", ["", "global:\n", "global: {}\n", "global:\n  mongodb: {}\n", "global: null\n"])
def test_rewrite_empty_shapes(old):
    data = values.load_values(values.rewrite_values(old, BOTH))
    assert data["global"]["mongodb"]["URL"] == NEW_URL
    assert data["global"]["s3"]["AWS_BUCKET"] == NEW_BUCKET


def test_rewrite_keeps_four_space_indentation():
    old = "global:\n    s3:\n        AWS_REGION: x\n"
    new = values.rewrite_values(old, BOTH)
    assert f"        AWS_BUCKET: {NEW_BUCKET}\n" in new
    assert f"    mongodb:\n        URL: {NEW_URL}\n" in new


@pytest.mark.parametrize("value", ["has: colon-space", "#hash", "'quote", "yes", "123", "a b"])
def test_rewrite_quotes_when_a_plain_scalar_would_change_meaning(value):
    old = "global:\n  s3:\n    AWS_BUCKET: x\n"
    new = values.rewrite_values(old, {mender.BUCKET: value})
    assert values.load_values(new)["global"]["s3"]["AWS_BUCKET"] == value


def test_rewrite_replaces_a_block_scalar_and_nothing_after_it():
    """A release restored once holds the carried signing key as helm gives it back, a
    block scalar: the next restore replaces it whole, the keys after it untouched."""
    old = ("useradm:\n  certs:\n    key: |\n      -----BEGIN OLD-----\n      b2xk\n\n      -----END OLD-----\n"
           "\n    # the next key\n    existingSecret: ''\n  replicas: 2\n")
    pem = "-----BEGIN NEW-----\nbmV3\n-----END NEW-----\n"
    new = values.rewrite_values(old, {("useradm", "certs", "key"): pem})
    assert values.load_values(new)["useradm"]["certs"]["key"] == pem
    assert "OLD" not in new and "b2xk" not in new
    assert new.endswith("\n    # the next key\n    existingSecret: ''\n  replicas: 2\n")


def test_the_diff_never_shows_a_block_scalar_key_line_by_line():
    old = "useradm:\n  certs:\n    key: |\n      -----BEGIN OLD-----\n      b2xkLXNlY3JldA==\n      -----END OLD-----\n"
    new = values.rewrite_values(old, {("useradm", "certs", "key"): "-----BEGIN NEW-----\nbmV3LXNlY3JldA==\n"})
    diff = values_diff.values_diff(old, new)
    assert "b2xkLXNlY3JldA" not in diff and "bmV3LXNlY3JldA" not in diff and "BEGIN" not in diff, diff
    assert "-    key: |" in diff and "+    key: ***" in diff


def test_diff_redacts_passwords():
    old = (FIXTURES / "mender-values.yaml").read_text()
    from mender_backup.redact import register_url_secrets
    register_url_secrets(NEW_URL)
    diff = values_diff.values_diff(old, values.rewrite_values(old, BOTH))
    assert "N3w-Pw-2025" not in diff and "S3cr3t" not in diff
    assert "-    URL: \"mongodb://mender:***@mongodb-0" in diff
    assert "+    URL: \"mongodb://mender:***@mongo-restored" in diff
    assert f"+    AWS_BUCKET: '{NEW_BUCKET}'" in diff


# --- helm commands -------------------------------------------------------------------

def test_helm_env_from_plugin_environment():
    env = runner.HelmEnv.from_env({"HELM_BIN": "/opt/helm", "HELM_NAMESPACE": "mender",
                                "HELM_KUBECONTEXT": "prod", "KUBECONFIG": "/k/config", "HELM_DEBUG": "true"})
    helm = runner.Helm(env)
    assert helm.argv("get", "values", "mender", "-o", "yaml") == [
        "/opt/helm", "get", "values", "mender", "-o", "yaml",
        "--namespace", "mender", "--kube-context", "prod", "--kubeconfig", "/k/config", "--debug"]
    assert runner.HelmEnv.from_env({}).flags() == []


def test_upgrade_command():
    helm = runner.Helm(runner.HelmEnv(bin="helm", namespace="default", kube_context="prod"))
    info = runner.ReleaseInfo.from_metadata({"name": "mender", "namespace": "mender", "chart": "mender",
                                          "version": "5.1.0", "revision": 7, "status": "deployed"})
    argv = runner.upgrade_argv(helm, info, "mender/mender", "/tmp/v.yaml")
    assert argv == ["helm", "upgrade", "mender", "mender/mender", "--version", "5.1.0", "-f", "/tmp/v.yaml",
                    "--reset-values", "--namespace", "mender", "--kube-context", "prod"]
    assert "--reuse-values" not in argv
    assert runner.rollback_hint(helm, info) == "helm rollback mender 7 --namespace mender --kube-context prod"


def test_not_deployed_is_refused():
    info = runner.ReleaseInfo.from_metadata({"name": "m", "namespace": "n", "chart": "mender",
                                          "version": "1", "revision": 3, "status": "pending-upgrade"})
    with pytest.raises(ConflictError, match="pending-upgrade, not deployed"):
        info.require_deployed()


def test_private_file_is_0600_and_removed():
    with values.private_file("global: {}\n") as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == "global: {}\n"
    assert not path.exists()
    with pytest.raises(RuntimeError):
        with values.private_file("x") as path:
            raise RuntimeError
    assert not path.exists()


def test_real_helm_errors_are_one_scrubbed_line(helm, tmp_path):
    """Without a cluster, the real helm fails; we turn that into one line and the right class."""
    env = runner.HelmEnv(bin=str(helm), kubeconfig=str(tmp_path / "missing-kubeconfig"))
    with pytest.raises((UnreachableError, NotFoundError)) as exc:
        runner.Helm(env).get_metadata("mender")
    assert "\n" not in str(exc.value)


# --- chart resolution and the rewritten values, with the real helm ---------------------

@pytest.fixture
def local_repo(helm, tmp_path):
    """A local chart repository of the real Mender charts, registered the way
    `helm repo add` + `helm repo update` leave it (repositories.yaml + cached index)."""
    from tests.mender_release import VERSIONS, chart_file
    pkg = tmp_path / "repo"
    pkg.mkdir()
    for v in VERSIONS:
        (pkg / chart_file(v).name).write_bytes(chart_file(v).read_bytes())
    helm_run(helm, "repo", "index", str(pkg), "--url", "https://charts.example.com")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mender-index.yaml").write_text((pkg / "index.yaml").read_text())
    config = tmp_path / "repositories.yaml"
    config.write_text("apiVersion: v1\nrepositories:\n- name: mender\n  url: https://charts.example.com\n")
    env = dict(os.environ, HELM_REPOSITORY_CONFIG=str(config), HELM_REPOSITORY_CACHE=str(cache))
    return env


def _helm_with_env(helm, env):
    def run_argv(argv):
        return subprocess.run(argv, capture_output=True, text=True, env=env)
    return runner.Helm(runner.HelmEnv(bin=str(helm)), runner=run_argv)


def test_resolve_chart_from_local_repo(helm, local_repo):
    h = _helm_with_env(helm, local_repo)
    for version in ("5.13.1", "8.2.1"):
        info = runner.ReleaseInfo("mender", "mender", "mender", version, 4, "deployed")
        assert runner.resolve_chart(h, info, None) == "mender/mender"
    assert runner.resolve_chart(h, info, "oci://example/mender") == "oci://example/mender"
    missing = runner.ReleaseInfo("mender", "mender", "mender", "9.9.9", 4, "deployed")
    with pytest.raises(NotFoundError, match="mender 9.9.9 is not in any local helm repo"):
        runner.resolve_chart(h, missing, None)


@pytest.mark.parametrize("version", ["5.13.1", "8.2.1"])
def test_rewritten_values_reach_the_real_charts_secrets(helm, tmp_path, version):
    """The rewritten file, given to helm exactly as the upgrade gives it (-f, a 0600 file),
    sets the URL and bucket in the Secrets Mender's pods read (mongodb-common, artifacts-storage)."""
    import base64
    from tests.mender_release import chart_file, signing_key
    old = (FIXTURES / "mender-values.yaml").read_text()
    keys = ("useradm:\n  certs:\n    key: |\n" + "".join(f"      {ln}\n" for ln in signing_key().splitlines())
            + "device_auth:\n  certs:\n    key: |\n" + "".join(f"      {ln}\n" for ln in signing_key().splitlines())
            + "global:\n  enterprise: false\n") if version.startswith("5.") else ""
    extra = tmp_path / "keys.yaml"
    # what the fixture leaves to the chart's defaults that would clash with it: an external NATS
    # and MongoDB instead of the embedded ones
    extra.write_text(keys + "mongodb:\n  enabled: false\nnats:\n  enabled: false\n")

    def rendered(text: str) -> dict[str, dict[str, str]]:
        with values.private_file(text) as path:
            docs = render(helm, "-f", str(path), "-f", str(extra), chart=chart_file(version), release="mender")
        return {d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
                for d in by_kind(docs, "Secret")}

    after = rendered(values.rewrite_values(old, BOTH))
    assert after["mongodb-common"]["MONGO_URL"] == after["mongodb-common"]["MONGO"] == NEW_URL
    assert after["artifacts-storage"]["AWS_BUCKET"] == NEW_BUCKET
    before = rendered(old)
    assert before["artifacts-storage"]["AWS_BUCKET"] == "mender-artifacts"
    assert before["mongodb-common"]["MONGO_URL"] != NEW_URL


def test_job_from_cronjob_of_the_rendered_chart(helm3):
    import kubernetes_validate
    from tests.helmutil import CHART
    manifest = helm_run(helm3, "template", "mender-backup", str(CHART), "-n", "mender").stdout
    job = companion.job_from_cronjob(manifest, "manual-20250101000000")
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == "mender-backup-manual-20250101000000"
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["backup", "--json"]
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    with pytest.raises(NotFoundError):
        companion.job_from_cronjob("kind: ConfigMap\n", "x")


def _info(version: str = "8.2.1") -> runner.ReleaseInfo:
    return runner.ReleaseInfo("mender", "mender", "mender", version, 3, "deployed", app_version="v4.1.3")


STATIC = mender.SecretKeys({"MONGO", "MONGO_URL"}, {"AWS_BUCKET", "STORAGE_BUCKET", "AWS_URI", "AWS_REGION",
                                                    "AWS_AUTH_KEY", "AWS_AUTH_SECRET", "AWS_FORCE_PATH_STYLE"})


def test_an_image_by_digest_or_tag_replaces_the_charts_stamped_digest():
    assert companion.image_values("reg.example/mb@sha256:" + "a" * 64) == {
        "repository": "reg.example/mb", "digest": "sha256:" + "a" * 64}
    assert companion.image_values("reg.example:5000/mb") == {"repository": "reg.example:5000/mb", "digest": ""}
    assert companion.image_values("reg.example:5000/mb:1.2") == {"repository": "reg.example:5000/mb", "tag": "1.2",
                                                                 "digest": ""}


def test_companion_values_reference_only_keys_the_secrets_hold():
    mv = mender.MenderValues({"global": {"s3": {"AWS_BUCKET": "b"}}}, 8)
    plain = companion.companion_values(_info(), mv, STATIC, destination="s3://backups/p", schedule="@daily",
                                       image="reg/mb:1.2")
    assert plain["mongodb"] == {"existingSecret": "mongodb-common", "existingSecretKey": "MONGO_URL", "url": ""}
    assert plain["s3"]["existingSecret"] == "artifacts-storage"
    assert plain["s3"]["existingSecretKeys"] == {"accessKeyId": "AWS_AUTH_KEY", "secretAccessKey": "AWS_AUTH_SECRET",
                                                 "bucket": "AWS_BUCKET", "endpoint": "AWS_URI", "region": "AWS_REGION"}
    assert plain["menderRelease"] == {"chart": "mender", "chartVersion": "8.2.1", "appVersion": "v4.1.3"}
    assert plain["image"] == {"repository": "reg/mb", "tag": "1.2", "digest": ""} and "serviceAccount" not in plain
    irsa = companion.companion_values(
        _info(), mender.MenderValues({"global": {"s3": {"AWS_SERVICE_ACCOUNT_NAME": "mender-s3"}}}, 8),
        mender.SecretKeys({"MONGO_URL"}, {"STORAGE_BUCKET", "AWS_REGION"}), destination="s3://b")
    assert irsa["s3"]["existingSecretKeys"] == {"accessKeyId": "", "secretAccessKey": "", "bucket": "STORAGE_BUCKET",
                                                "endpoint": "", "region": "AWS_REGION"}
    assert irsa["serviceAccount"] == {"create": False, "name": "mender-s3"}
    own = companion.companion_values(
        _info(), mender.MenderValues({"global": {"mongodb": {"existingSecret": "my-mongo"},
                                                 "s3": {"existingSecret": "my-s3"}}}, 8),
        mender.SecretKeys({"MONGO"}, {"AWS_BUCKET"}), destination="s3://b")
    assert own["mongodb"]["existingSecret"] == "my-mongo" and own["mongodb"]["existingSecretKey"] == "MONGO"
    assert own["s3"]["existingSecret"] == "my-s3"
    with pytest.raises(UsageError, match="storage account is needed"):
        companion.companion_values(_info(), mender.MenderValues({"global": {"storage": "azure"}}, 8), STATIC,
                                   destination="s3://b")
    on_azure = companion.companion_values(
        _info(), mender.MenderValues({"global": {"storage": "azure"}}, 8),
        mender.SecretKeys({"MONGO_URL"}, {"STORAGE_BUCKET", "AZURE_AUTH_CONNECTION_STRING"}), destination="s3://b",
        azure=AzureLocation("fleet", "arts", named="arts"))
    assert on_azure["azure"] == {"account": "fleet", "blobEndpoint": "", "container": "",
                                 "existingSecret": "artifacts-storage", "existingSecretKeys": {
                                     "container": "STORAGE_BUCKET", "connectionString": "AZURE_AUTH_CONNECTION_STRING",
                                     "accountKey": ""}}
    assert "s3" not in on_azure
    assert json.dumps(plain)  # plain data, ready for a values file


def test_an_azure_release_whose_uri_names_another_container_than_container_name_is_refused():
    """Mender uses the URI's container; the CronJob reads CONTAINER_NAME (STORAGE_BUCKET) live."""
    with pytest.raises(UsageError, match="names container 'real' .* CONTAINER_NAME is 'mender-artifact-storage'"):
        AzureLocation("fleet", "real", "https://fleet.blob.core.windows.net", named="mender-artifact-storage"
                      ).check_followable()
    AzureLocation("fleet", "real", "https://fleet.blob.core.windows.net", named="real").check_followable()
    assert account_in("DefaultEndpointsProtocol=https; AccountName = fleet ;AccountKey=a2V5") == "fleet"
    assert account_in("BlobEndpoint=https://x") == ""


def test_storage_proxy_rule_follows_a_renamed_bucket():
    rule = "PathRegexp(`^/mender-artifact-storage`)"
    assert mender.proxy_rule_for(rule, "mender-artifact-storage", "restored") == "PathRegexp(`^/restored`)"
    assert mender.proxy_rule_for(rule, "mender-artifact-storag", "x") is None       # a whole name only
    assert mender.proxy_rule_for("HostRegexp(`^artifacts.*$`)", "mender-artifact-storage", "x") is None


@pytest.mark.parametrize("major, values_, kept", [
    (5, {}, {}),                                      # 5.x: keys come from values, always
    (6, {}, {"useradm": "rsa-useradm", "device_auth": "rsa-device-auth"}),
    (8, {"useradm": {"certs": {"key": "PEM"}}}, {"device_auth": "rsa-device-auth"}),
    (8, {"device_auth": {"certs": {"existingSecret": "mine"}}}, {"useradm": "rsa-useradm"}),
    (8, {"global": {"enterprise": True}, "tenantadm": {"enabled": True}},
     {"useradm": "rsa-useradm", "device_auth": "rsa-device-auth", "tenantadm": "rsa-tenantadm"}),
])
def test_signing_keys_the_upgrade_would_regenerate(major, values_, kept):
    assert mender.MenderValues(values_, major).signing_keys_to_keep() == kept


def test_only_the_mender_chart_5_to_8_is_supported():
    mender.check_supported(_info("5.13.1"))
    mender.check_supported(_info("8.2.1"))
    for chart, version in (("mender", "4.2.0"), ("mender", "9.0.0"), ("other", "8.2.1")):
        with pytest.raises(UsageError, match="5.x to 8.x"):
            mender.check_supported(runner.ReleaseInfo("r", "n", chart, version, 1, "deployed"))


@pytest.mark.parametrize("text,fragment", [
    ("global: {mongodb: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "not a YAML mapping"),
    ("global:\n  mongodb:\n    URL: a\n   bad: indentation\n", "not valid YAML"),
])
def test_invalid_values_are_one_line_usage_errors(text, fragment):
    with pytest.raises(UsageError, match=fragment) as e:
        values.rewrite_values(text, {("global", "mongodb", "URL"): "mongodb://new:27017"})
    assert "\n" not in str(e.value) and e.value.exit_code == 2
