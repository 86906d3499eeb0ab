"""The image users run, built by `make image` (podman, on a Debian base made here from
Debian's packages) and run as the chart's pod runs it: read-only root, uid 10001, /tmp a
tmpfs, and the environment the chart renders, its Secret references resolved against
the Secrets the real Mender chart makes. Against DocumentDB and MinIO.
"""

from __future__ import annotations

import json
import uuid

from testenv import image as img
from testenv import mender_data
from tests.cli import result_of
from tests.helmutil import by_kind, render
from tests.mender_release import mender_values, rendered_secrets, write_values


def chart_pod(helm, *args: str) -> dict:
    """The pod spec of the CronJob our chart renders."""
    (cj,) = by_kind(render(helm, *args), "CronJob")
    return cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def resolve_env(container: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: a key the Secret lacks fails
    the pod (CreateContainerConfigError), so it fails here too."""
    env = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets.get(ref["name"], {}), \
            f"{e['name']} reads key {ref['key']} of Secret {ref['name']}, which the Mender chart did not create"
        env[e["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def test_image_is_built_to_run_unprivileged(image):
    config = json.loads(img.podman("image", "inspect", image.ref).stdout)[0]["Config"]
    assert config["User"] == f"{img.UID}:{img.UID}"
    assert config["Entrypoint"] == ["mender-backup"]
    r = img.run(image, ["-c", "import os, sys; print(os.getuid(), os.getgid(), sys.version_info[:2]);"
                              "open('/opt/mender-backup/probe', 'w')"], {}, entrypoint="python3")
    assert r.stdout.split()[:2] == ["10001", "10001"], r.stdout + r.stderr
    assert "Read-only file system" in r.stderr and r.returncode == 1


def test_image_runs_a_backup_as_the_chart_runs_it(image, helm3, new_mongodb, minio, bucket, tmp_path):
    mongo = new_mongodb()
    counts = mender_data.seed_mongo(mongo.client(), scale=0.05, full_mongodb=True)
    mender_data.seed_bucket(minio.client(), bucket, count=5)
    backups = f"backups-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=backups)
    secrets = rendered_secrets(helm3, write_values(mender_values("5.13.1", mongodb_url=mongo.url, minio=minio, bucket=bucket), tmp_path / "mender.yaml"))

    pod = chart_pod(helm3, "--set", f"destination.url=s3://{backups}/mender")
    # what img.run applies is what the chart asks for
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == img.UID
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    env = resolve_env(container, secrets)
    assert env["MONGODB_URL"] == mongo.url and env["AWS_ENDPOINT_URL"] == minio.endpoint

    r = img.run(image, container["args"], env)
    assert r.returncode == 0, r.stderr
    made = result_of(r)
    assert made["documents"] == sum(counts.values()) and made["artifacts"] == 5

    listing = result_of(img.run(image, ["list", "--json"], env))
    assert [(b["id"], b["complete"]) for b in listing] == [(made["id"], True)]
    keys = {o["Key"] for o in minio.client().list_objects_v2(Bucket=backups)["Contents"]}
    assert f"mender/backups/{made['id']}/manifest.json" in keys
