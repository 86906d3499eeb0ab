"""mender_backup/kube: connecting with the official Kubernetes client as helm connects,
against the real kube-apiserver of testenv/kube.py: each way a kubeconfig can carry
credentials, helm's overrides, and the one-line errors."""

from __future__ import annotations

import base64
import json
import sys
import uuid
from pathlib import Path

import pytest

from mender_backup.errors import ConflictError, NotFoundError, UnreachableError, UsageError
from mender_backup.kube.connection import Kube


def kubeconfig(path: Path, cluster, user: dict, server: str | None = None, **context) -> Path:
    conf = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": server or cluster.url,
            "certificate-authority-data": base64.b64encode(cluster.ca.read_bytes()).decode()}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", **context}}],
    }
    path.write_text(json.dumps(conf))
    return path


def whoami(kube: Kube) -> str:
    from kubernetes import client
    with kube.call("self subject review"):
        review = client.AuthenticationV1Api(kube.api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    return review.status.user_info.username


def test_token_from_kubeconfig_and_namespace(kube_cluster, tmp_path):
    path = kubeconfig(tmp_path / "kc", kube_cluster, {"token": kube_cluster.token}, namespace="mender")
    kube = Kube.from_env({"KUBECONFIG": str(path)})
    assert kube.namespace == "mender"
    assert whoami(kube) == "e2e-admin"


def test_token_file_relative_to_the_kubeconfig(kube_cluster, tmp_path):
    (tmp_path / "token").write_text(kube_cluster.token + "\n")
    path = kubeconfig(tmp_path / "kc", kube_cluster, {"tokenFile": str(tmp_path / "token")})
    assert whoami(Kube.from_env({"KUBECONFIG": str(path)})) == "e2e-admin"


def test_client_certificate_as_data_and_as_files(kube_cluster, tmp_path):
    pki = kube_cluster.pki
    data = {"client-certificate-data": base64.b64encode(pki["client_cert"].read_bytes()).decode(),
            "client-key-data": base64.b64encode(pki["client_key"].read_bytes()).decode()}
    path = kubeconfig(tmp_path / "kc1", kube_cluster, data)
    assert whoami(Kube.from_env({"KUBECONFIG": str(path)})) == "e2e-cert-admin"
    files = {"client-certificate": str(pki["client_cert"]), "client-key": str(pki["client_key"])}
    path = kubeconfig(tmp_path / "kc2", kube_cluster, files)
    assert whoami(Kube.from_env({"KUBECONFIG": str(path)})) == "e2e-cert-admin"


def test_exec_credential_plugin(kube_cluster, tmp_path):
    script = tmp_path / "cred.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',\n"
        "                  'status': {'token': os.environ['E2E_TOKEN']}}))\n")
    script.chmod(0o755)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script),
                     "env": [{"name": "E2E_TOKEN", "value": kube_cluster.token}],
                     "interactiveMode": "Never"}}
    path = kubeconfig(tmp_path / "kc", kube_cluster, user)
    assert whoami(Kube.from_env({"KUBECONFIG": str(path)})) == "e2e-admin"

    user["exec"]["command"] = str(tmp_path / "missing-plugin")
    user["exec"]["installHint"] = "install it from your cloud"
    path = kubeconfig(tmp_path / "kc2", kube_cluster, user)
    with pytest.raises(UnreachableError, match="missing-plugin not found. install it from your cloud"):
        Kube.from_env({"KUBECONFIG": str(path)})

    failing = tmp_path / "failing.sh"
    failing.write_text("#!/bin/sh\necho 'token expired, run login' >&2\nexit 3\n")
    failing.chmod(0o755)
    user["exec"]["command"] = str(failing)
    path = kubeconfig(tmp_path / "kc3", kube_cluster, user)
    with pytest.raises(UnreachableError, match="kubeconfig: exec"):
        Kube.from_env({"KUBECONFIG": str(path)})


def test_helm_flags_override_the_kubeconfig(kube_cluster, tmp_path):
    """`helm --kube-token --kube-apiserver --kube-ca-file --kube-context -n`, as helm
    passes them to plugins."""
    path = kubeconfig(tmp_path / "kc", kube_cluster, {"token": "wrong"}, server="https://127.0.0.1:1")
    env = {"KUBECONFIG": str(path), "HELM_KUBEAPISERVER": kube_cluster.url, "HELM_KUBETOKEN": kube_cluster.token,
           "HELM_KUBECAFILE": str(kube_cluster.ca), "HELM_KUBEINSECURE_SKIP_TLS_VERIFY": "false",
           "HELM_NAMESPACE": "ns2", "HELM_KUBECONTEXT": "c"}
    kube = Kube.from_env(env)
    assert kube.namespace == "ns2" and whoami(kube) == "e2e-admin"
    with pytest.raises(UsageError, match='context "other" does not exist'):
        Kube.from_env({**env, "HELM_KUBECONTEXT": "other"})


def test_impersonation_as_helm_passes_it(kube_cluster, tmp_path):
    path = kubeconfig(tmp_path / "kc", kube_cluster, {"token": kube_cluster.token})
    kube = Kube.from_env({"KUBECONFIG": str(path), "HELM_KUBEASUSER": "someone-else",
                          "HELM_KUBEASGROUPS": "system:masters"})
    assert whoami(kube) == "someone-else"
    with pytest.raises(UsageError, match="more than one group"):
        Kube.from_env({"KUBECONFIG": str(path), "HELM_KUBEASUSER": "x", "HELM_KUBEASGROUPS": "a,b"})


def test_errors_are_one_line_of_the_right_kind(kube_cluster, tmp_path):
    path = kubeconfig(tmp_path / "kc", kube_cluster, {"token": kube_cluster.token})
    kube = Kube.from_env({"KUBECONFIG": str(path)})
    with pytest.raises(NotFoundError, match='cronjobs.batch "nope" not found'), kube.call("get"):
        kube.batch.read_namespaced_cron_job("nope", "default")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "twice"}}
    with kube.call("create"):
        kube.core.create_namespaced_config_map("default", cm)
    with pytest.raises(ConflictError, match="already exists"), kube.call("create"):
        kube.core.create_namespaced_config_map("default", cm)
    with pytest.raises(UsageError, match="Invalid value"), kube.call("create"):
        kube.core.create_namespaced_config_map("default", {**cm, "metadata": {"name": "Bad_Name"}})

    bad = kubeconfig(tmp_path / "kc2", kube_cluster, {"token": "not-the-token-4711"})
    with pytest.raises(UnreachableError, match="Unauthorized") as exc:
        k = Kube.from_env({"KUBECONFIG": str(bad)})
        with k.call("list namespaces"):
            k.core.list_namespace()
    assert "not-the-token-4711" not in str(exc.value)

    down = kubeconfig(tmp_path / "kc3", kube_cluster, {"token": "x"}, server="https://127.0.0.1:1")
    k = Kube.from_env({"KUBECONFIG": str(down)})
    k.api.configuration.retries = 0
    with pytest.raises(UnreachableError, match="Kubernetes API https://127.0.0.1:1 list namespaces: cannot connect"):
        with k.call("list namespaces"):
            k.core.list_namespace()


def test_refusals_without_a_cluster(tmp_path):
    with pytest.raises(UnreachableError, match="no Kubernetes configuration"):
        Kube.from_env({"HOME": str(tmp_path)})
    conf = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "u", "user": {"auth-provider": {"name": "gcp"}}}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}
    (tmp_path / "kc").write_text(json.dumps(conf))
    with pytest.raises(UsageError, match="auth-provider 'gcp' is not supported"):
        Kube.from_env({"KUBECONFIG": str(tmp_path / "kc")})


def test_kubeconfig_files_merge_first_wins(kube_cluster, tmp_path):
    first = kubeconfig(tmp_path / "a", kube_cluster, {"token": kube_cluster.token})
    second = {"apiVersion": "v1", "kind": "Config", "current-context": "elsewhere",
              "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
              "users": [{"name": "u", "user": {"token": "wrong"}}], "contexts": []}
    (tmp_path / "b").write_text(json.dumps(second))
    assert whoami(Kube.from_env({"KUBECONFIG": f"{first}:{tmp_path / 'b'}"})) == "e2e-admin"


def test_the_api_server_is_the_pinned_release(kube_cluster):
    """testenv/build.sh stamps the version as Kubernetes' own build does (helm
    checks charts' kubeVersion against it)."""
    version = kube_cluster.get("/version")
    assert (version["gitVersion"], version["major"], version["minor"]) == ("v1.37.2", "1", "37")
    assert "system:masters" in json.dumps(
        kube_cluster.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                             {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))


def test_wait_ready_names_what_has_not_rolled_out(kube_cluster, tmp_path):
    """The restore's last wait, `kubectl rollout status`'s test: a Deployment whose change
    is not observed, or whose pods are not all updated and Ready, is named with why; one
    whose status says so is done. (No kubelet here: the test writes the status itself.)"""
    from mender_backup.kube import workloads
    ns = f"wait-{uuid.uuid4().hex[:6]}"
    kube_cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": ns}})
    labels = {"app": "x"}
    kube_cluster.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    kube = Kube.from_env({"KUBECONFIG": str(kubeconfig(tmp_path / "kc", kube_cluster, {"token": kube_cluster.token}))})
    w = workloads.Workload("Deployment", "x", ns, replicas=2)
    sleeps: list[float] = []

    def status(**st):
        path = f"/apis/apps/v1/namespaces/{ns}/deployments/x"
        obj = kube_cluster.get(path)
        obj["status"] = {"observedGeneration": obj["metadata"]["generation"], **st}
        kube_cluster.request("PUT", path + "/status", obj)

    assert workloads.wait_ready(kube, [w], 0) == {"deployment/x": "its change is not observed yet"}
    status(replicas=2, updatedReplicas=2, readyReplicas=1)
    assert workloads.wait_ready(kube, [w], 0) == {"deployment/x": "1/2 ready, 2 updated"}
    # a clock that moves 1 s per reading: the deadline is 3; the checks at 1 and 2 wait a
    # poll each, the one at 3 gives up
    t = iter(range(100))
    assert workloads.wait_ready(kube, [w], 3, clock=lambda: next(t), sleep=sleeps.append) == \
        {"deployment/x": "1/2 ready, 2 updated"}
    assert sleeps == [2.0, 2.0]
    status(replicas=2, updatedReplicas=2, readyReplicas=2)
    assert workloads.wait_ready(kube, [w], 0) == {}

    # Ready must hold for `settle` seconds: Ready at 1, a pod fails (read at 2), Ready again
    # at 3; done at 8, five seconds after, not at 1
    events = iter([lambda: status(replicas=2, updatedReplicas=2, readyReplicas=1),
                   lambda: status(replicas=2, updatedReplicas=2, readyReplicas=2)])
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        next(events, lambda: None)()

    t = iter(range(100))
    assert workloads.wait_ready(kube, [w], 60, settle=5, clock=lambda: next(t), sleep=sleep) == {}
    assert len(slept) == 7
