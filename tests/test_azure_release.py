"""A real Mender chart (8.2.1) whose artifacts are in Azure Blob Storage (`global.storage:
azure`, Azurite here), through the real helm and our plugin, against a real Kubernetes API
(no kubelet: tests/test_kube_e2e.py says what that means). `install` must give the CronJob
the keys the Mender chart created; `restore` must move the release to a new container.

A pod cannot run here without a node, so the CronJob's environment is resolved as the
kubelet resolves it (secretKeyRef, `optional`, `$(VAR)` expansion, in order) and the tool
runs a backup with exactly that environment: the rendered env itself is what is proven.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from testenv import mender_data
from tests import cli
from tests.mender_release import NO_PODS, install_mender, mender_values, secret

VERSION = "8.2.1"


@pytest.fixture(params=["helm3", "helm4"])
def hx(request, helm_e2e):
    return helm_e2e(request.param)


def azure_values(azurite, container: str, mongodb_url: str, minio, connection_string: bool = False) -> dict:
    values = mender_values(VERSION, mongodb_url=mongodb_url, minio=minio, bucket="unused")
    values["global"]["storage"] = "azure"
    values["global"]["azure"] = (
        {"AUTH_CONNECTION_STRING": azurite.connection_string(), "CONTAINER_NAME": container} if connection_string
        # Mender takes the URI as the container's URL (deployments' storage/azblob/options.go)
        else {"AUTH_SHARED_KEY_ACCOUNT_NAME": azurite.account, "AUTH_SHARED_KEY_ACCOUNT_KEY": azurite.key,
              "AUTH_SHARED_KEY_URI": f"{azurite.endpoint}/{container}", "CONTAINER_NAME": container})
    return values


def pod_env(hx, ns: str, cronjob: dict) -> dict[str, str]:
    """The container's environment as the kubelet makes it from the CronJob."""
    (c,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
            continue
        ref = e["valueFrom"]["secretKeyRef"]
        data = secret(hx, ns, ref["name"])
        if ref["key"] in data:
            env[e["name"]] = data[ref["key"]].decode()
        else:
            assert ref.get("optional"), f"{e['name']}: {ref} is missing and not optional: the pod would not start"
    return env


@pytest.mark.parametrize("connection_string", [False, True], ids=["shared-key", "connection-string"])
def test_install_gives_the_cronjob_the_azure_keys_the_mender_chart_created(
        hx, azurite, container, new_mongodb, minio, tmp_path, connection_string):
    ns = hx.new_namespace()
    source = new_mongodb()
    mender_data.seed_mongo(source.client(), scale=0.1)
    artifacts = azurite.create_container(f"mender-{uuid.uuid4().hex[:8]}")
    azurite.seed(artifacts, count=5)
    install_mender(hx, ns, VERSION, azure_values(azurite, artifacts, source.url, minio, connection_string), tmp_path)
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", azurite.url(container, "prod"))

    cj = hx.cluster.get(f"/apis/batch/v1/namespaces/{ns}/cronjobs/mender-backup")
    (c,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert refs["MENDER_BACKUP_AZURE_CONTAINER"] == {"name": "artifacts-storage", "key": "STORAGE_BUCKET"}
    credentials = {k: v["key"] for k, v in refs.items() if k.startswith("AZURE_STORAGE_")}
    assert credentials == ({"AZURE_STORAGE_CONNECTION_STRING": "AZURE_AUTH_CONNECTION_STRING"} if connection_string
                           else {"AZURE_STORAGE_KEY": "AZURE_AUTH_SHARED_KEY_ACCOUNT_KEY"})
    plain = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    # the Blob service of the container's URL Mender was given (none with a connection string: it has its own)
    assert plain.get("AZURE_STORAGE_BLOB_ENDPOINT") == (None if connection_string else azurite.endpoint)
    assert not [e["name"] for e in c["env"] if e["name"].startswith("AWS_")]
    assert azurite.key not in json.dumps(cj)

    env = pod_env(hx, ns, cj)
    assert env["MENDER_BACKUP_ARTIFACTS_BUCKET"] == azurite.url(artifacts)
    backup = cli.result_of(cli.run("backup", "--json", env=env))
    assert backup["artifacts"] == 5
    assert {k.split("/artifacts/", 1)[1] for k in azurite.blobs(container, "prod/artifacts/")} == set(
        azurite.blobs(artifacts))


def test_restore_moves_the_release_to_a_new_container(helm_e2e, azurite, container, new_mongodb, minio, tmp_path):
    hx = helm_e2e("helm3")
    ns = hx.new_namespace()
    source, target = new_mongodb(), new_mongodb()
    mender_data.seed_mongo(source.client(), scale=0.2)
    artifacts = azurite.create_container(f"mender-{uuid.uuid4().hex[:8]}")
    azurite.seed(artifacts, count=6)
    install_mender(hx, ns, VERSION, azure_values(azurite, artifacts, source.url, minio), tmp_path)
    dest = azurite.url(container, "mender")
    hx("-n", ns, "mender-backup", "install", "mender", "--destination", dest)
    bid = cli.result_of(cli.run("backup", "--json", env={**azurite.env(), "MONGODB_URL": source.url,
                                                         "MENDER_BACKUP_DESTINATION": dest,
                                                         "MENDER_BACKUP_ARTIFACTS_BUCKET": azurite.url(artifacts)}))["id"]
    new_container = azurite.create_container(f"restored-{uuid.uuid4().hex[:8]}")

    proc = hx("-n", ns, "mender-backup", "restore", *NO_PODS, "mender", "--backup", bid, "--mongodb-url", target.url,
              "--bucket", new_container, "--yes", env=azurite.env())
    assert azurite.blobs(new_container) == azurite.blobs(artifacts) != {}
    for name in azurite.blobs(artifacts):
        assert azurite.read(new_container, name) == azurite.read(artifacts, name)
    assert secret(hx, ns, "artifacts-storage")["STORAGE_BUCKET"].decode() == new_container
    values = hx.values("mender", ns, 2)
    assert values["global"]["azure"]["CONTAINER_NAME"] == new_container
    assert values["global"]["azure"]["AUTH_SHARED_KEY_URI"] == f"{azurite.endpoint}/{new_container}"
    assert values["global"]["azure"]["AUTH_SHARED_KEY_ACCOUNT_KEY"] == azurite.key     # untouched
    assert values["global"]["mongodb"]["URL"] == target.url
    assert azurite.key not in proc.stdout + proc.stderr
