"""The chart's PrometheusRule: it renders; Prometheus's own rule parser accepts its groups
(PromQL, templates); the real kube-apiserver, with prometheus-operator's PrometheusRule
CRD installed, validates and stores the rendered object. Each check is shown to fail on a
broken rule."""

from __future__ import annotations

import copy
import subprocess
import uuid

import pytest
from ruamel.yaml import YAML

from testenv.kube import ApiError, wait_for
from tests.conftest import need_tool
from tests.helmutil import by_kind, render




def _rule(helm, *args: str) -> dict:
    docs = render(helm, "--set", "metrics.prometheusRule.enabled=true", *args)
    rules = by_kind(docs, "PrometheusRule")
    assert len(rules) == 1
    return rules[0]


def _check(tmp_path, spec: dict) -> subprocess.CompletedProcess:
    path = tmp_path / f"rules-{uuid.uuid4().hex[:6]}.yaml"
    with open(path, "w") as f:
        YAML(typ="safe").dump({"groups": spec["groups"]}, f)
    return subprocess.run([str(need_tool("rules-check")), str(path)], capture_output=True, text=True)


def test_off_by_default(helm):
    assert not by_kind(render(helm), "PrometheusRule")


def test_the_rules_parse_with_prometheus(helm3, tmp_path):
    rule = _rule(helm3, "--set", "verifyRestore.enabled=true", "--set", "verifyRestore.mongodb.existingSecret=s",
                 "--set", "metrics.prometheusRule.maxAgeHours=30")
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert set(alerts) == {"MenderBackupTooOld", "MenderBackupNeverSucceeded", "MenderBackupFailed",
                           "MenderBackupTestRestoreFailed"}
    assert "> 108000" in alerts["MenderBackupTooOld"]["expr"]                       # 30 h
    assert 'destination="s3://mender-backup"' in alerts["MenderBackupFailed"]["expr"]
    assert alerts["MenderBackupNeverSucceeded"]["for"] == "30h"
    r = _check(tmp_path, rule["spec"])
    assert r.returncode == 0 and "SUCCESS: 4 rules found" in r.stdout, r.stderr

    broken = copy.deepcopy(rule["spec"])
    broken["groups"][0]["rules"][0]["expr"] = "time() - max(mender_backup_last_success_timestamp_seconds"
    r = _check(tmp_path, broken)
    assert r.returncode == 1 and "parse error" in r.stderr
    broken = copy.deepcopy(rule["spec"])
    broken["groups"][0]["rules"][0]["annotations"]["description"] = "{{ $value | nosuchfunction }}"
    assert _check(tmp_path, broken).returncode == 1


@pytest.fixture(scope="module")
def crd(kube_cluster):
    doc = YAML(typ="safe").load(need_tool("prometheusrules.crd.yaml").read_text())
    try:
        kube_cluster.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    except ApiError as exc:
        if exc.status != 409:           # the session's API server may have it already
            raise
    name = doc["metadata"]["name"]

    def established():
        crd = kube_cluster.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conds = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    wait_for(established, "the PrometheusRule CRD")
    ns = f"alerts-{uuid.uuid4().hex[:6]}"
    kube_cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": ns}})
    return ns


def test_the_api_server_validates_the_rendered_rule(kube_cluster, crd, helm):
    rule = _rule(helm, "--set", "metrics.prometheusRule.labels.release=kube-prometheus-stack")
    path = f"/apis/monitoring.coreos.com/v1/namespaces/{crd}/prometheusrules"
    rule["metadata"]["name"] += f"-{helm.name}"
    kube_cluster.request("POST", path + "?fieldValidation=Strict", rule)
    stored = kube_cluster.get(f"{path}/{rule['metadata']['name']}")
    assert stored["spec"] == rule["spec"]
    assert stored["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    bad = copy.deepcopy(rule)
    bad["metadata"]["name"] += "-bad"
    bad["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"         # not a Prometheus duration
    with pytest.raises(ApiError) as exc:
        kube_cluster.request("POST", path + "?fieldValidation=Strict", bad)
    assert exc.value.status == 422 and "for" in exc.value.body
    bad["spec"]["groups"][0]["rules"][0]["for"] = "10m"
    bad["spec"]["groups"][0]["rules"][0]["severity"] = "high"          # unknown field
    with pytest.raises(ApiError) as exc:
        kube_cluster.request("POST", path + "?fieldValidation=Strict", bad)
    assert exc.value.status == 400 and "severity" in exc.value.body
