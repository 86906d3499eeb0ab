"""`make release` (scripts/release.sh) into a local CNCF distribution registry, then used as an
operator uses a release: the chart installed with `helm install oci://...` on the test node,
whose containerd pulls our image from the registry by the digest the chart carries (nothing
imported), and the CronJob's pod runs a backup; the image's cosign-format signature and the
chart's provenance checked with the published keys, and refused for a tampered artifact.

One platform here: the image for linux/arm64 needs qemu's binfmt handler, which this machine's
kernel does not offer (tests/ENVIRONMENT.md); release.sh refuses such a platform in one line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.request
import uuid
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from mender_backup import __version__
from testenv import mender_data
from testenv.image import BASE, BASE_PYTHON, podman_env
from tests.conftest import need_tool
from tests.helmutil import ROOT
from tests.mender_release import chart_file, mender_values, write_values
from tests.test_node import hx, job_pods, manifests, pod_log, run_job, wait_job  # noqa: F401 (hx: a fixture)

GPG_KEY = "mender-backup test release <release@example.invalid>"
PASSWORD = "release-test-password"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from testenv.registry import start_registry
    need_tool("registry")
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    """Throw-away keys, as a release's come from CI's secrets: gpg (chart, plugin, sums) and a
    cosign pair (the image), with a second pair that signed nothing."""
    d = tmp_path_factory.mktemp("keys")
    (d / "gnupg").mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(d / "gnupg")}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", GPG_KEY, "rsa2048", "sign", "never"],
                   env=env, check=True, capture_output=True)
    (d / "password").write_text(PASSWORD)
    for name in ("cosign", "other"):
        subprocess.run([str(need_tool("image-sign")), "keygen", str(d / "password"), str(d / name)], check=True)
    return {"env": env, "dir": d}


@pytest.fixture(scope="module")
def released(registry, keys, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("release") / "dist"
    env = {**podman_env(), **keys["env"], "OUT": str(out), "HELM": str(need_tool("helm4")),
           "MENDER_BACKUP_SIGNING_KEY": GPG_KEY, "MENDER_BACKUP_COSIGN_KEY": str(keys["dir"] / "cosign.key"),
           "MENDER_BACKUP_COSIGN_PASSWORD_FILE": str(keys["dir"] / "password")}
    r = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "release", f"VERSION={__version__}",
                        f"REGISTRY={registry.host}/mb", "RELEASE_PLATFORMS=linux/amd64", f"BASE={BASE}",
                        f"IMAGE_PYTHON={BASE_PYTHON}", f"IMAGE_SIGN={need_tool('image-sign')}"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    image = (out / "image" / "mender-backup-image.txt").read_text().strip()
    return {"dist": out, "image": image, "digest": image.rpartition("@")[2],
            "chart": f"oci://{registry.host}/mb/charts/mender-backup"}


def registry_get(registry, path: str, accept: str = "application/vnd.oci.image.index.v1+json") -> tuple[bytes, str]:
    req = urllib.request.Request(f"http://{registry.host}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read(), r.headers["Content-Type"]


def registry_put_manifest(registry, repo: str, ref: str, body: bytes, media_type: str) -> str:
    req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/{ref}", data=body, method="PUT",
                                 headers={"Content-Type": media_type})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Docker-Content-Digest"]


def image_sign_verify(key: Path, ref: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(need_tool("image-sign")), "verify", str(key), ref], capture_output=True, text=True)


def test_the_release_tag_is_the_pushed_digest_and_every_file_is_summed_and_signed(registry, released, tmp_path):
    body, media_type = registry_get(registry, f"mb/mender-backup/manifests/{__version__}")
    assert "sha256:" + hashlib.sha256(body).hexdigest() == released["digest"]
    index = json.loads(body)
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64"]
    dist = released["dist"]
    # as a user: the published key into a keyring of their own (gpg would rewrite a --keyring file)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home)]
    subprocess.run([*gpg, "--import", str(dist / "mender-backup-signing-key.gpg")], check=True, capture_output=True)
    subprocess.run([*gpg, "--verify", "SHA256SUMS.asc", "SHA256SUMS"], cwd=dist, check=True, capture_output=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dist, check=True)
    summed = {line.split()[1] for line in (dist / "SHA256SUMS").read_text().splitlines()}
    assert {f"chart/mender-backup-{__version__}.tgz", "image/mender-backup-cosign.pub", "RELEASE.md",
            f"sbom/mender-backup-{__version__}-linux-amd64.spdx.json"} <= summed
    assert released["digest"] in (dist / "RELEASE.md").read_text()


def test_the_sbom_lists_the_images_python_and_debian_packages(released):
    sbom = json.loads((released["dist"] / "sbom" / f"mender-backup-{__version__}-linux-amd64.spdx.json").read_text())
    names = {re.sub(r"[-_.]+", "-", p["name"].lower()): p.get("versionInfo") for p in sbom["packages"]}
    assert names.get("mender-backup") == __version__
    assert {"pymongo", "boto3", "typer", "ruamel-yaml"} <= names.keys()      # the locked wheels
    assert {"libc6", "python3.11"} <= {p["name"] for p in sbom["packages"]}  # the base's dpkg packages


def test_the_chart_in_the_registry_pins_the_pushed_image(released, tmp_path):
    helm = need_tool("helm4")
    subprocess.run([str(helm), "pull", released["chart"], "--version", __version__, "--plain-http", "-d", str(tmp_path)],
                   check=True, capture_output=True)
    with tarfile.open(tmp_path / f"mender-backup-{__version__}.tgz") as t:
        values = YAML(typ="safe").load(t.extractfile("mender-backup/values.yaml"))
    repository, _, digest = released["image"].partition("@")
    assert (values["image"]["repository"], values["image"]["digest"]) == (repository, digest)


def test_the_image_signature_verifies_with_the_published_key_only(released, keys):
    pub = released["dist"] / "image" / "mender-backup-cosign.pub"
    ok = image_sign_verify(pub, released["image"])
    assert ok.returncode == 0, ok.stderr
    other = image_sign_verify(keys["dir"] / "other.pub", released["image"])
    assert other.returncode == 1 and other.stderr.startswith("error: signature not verified")


def test_a_tampered_image_under_the_release_tag_fails_verification(registry, released):
    """The attack a signature exists for: the tag moved to other content, the release's valid
    signature copied beside it."""
    body, media_type = registry_get(registry, f"mb/mender-backup/manifests/{released['digest']}")
    index = json.loads(body)
    index.setdefault("annotations", {})["org.example.tampered"] = "yes"
    tampered = registry_put_manifest(registry, "mb/mender-backup", f"{__version__}-tampered",
                                     json.dumps(index).encode(), media_type)
    sig_tag = lambda d: d.replace(":", "-") + ".sig"                        # noqa: E731 (cosign's attachment tag)
    sig, sig_type = registry_get(registry, f"mb/mender-backup/manifests/{sig_tag(released['digest'])}",
                                 "application/vnd.oci.image.manifest.v1+json")
    registry_put_manifest(registry, "mb/mender-backup", sig_tag(tampered), sig, sig_type)
    pub = released["dist"] / "image" / "mender-backup-cosign.pub"
    bad = image_sign_verify(pub, f"{registry.host}/mb/mender-backup@{tampered}")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "signature not verified" in bad.stderr


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_the_chart_verifies_with_the_published_key_and_a_tampered_one_is_refused(released, registry, helm_name,
                                                                                 tmp_path):
    helm, keyring = need_tool(helm_name), released["dist"] / "mender-backup-signing-key.gpg"
    pull = [str(helm), "pull", "--version", __version__, "--plain-http", "--verify", "--keyring", str(keyring)]
    for d in ("good", "pulled-bad"):
        (tmp_path / d).mkdir()                                              # helm pull -d makes no folder
    good = subprocess.run([*pull, released["chart"], "-d", str(tmp_path / "good")], capture_output=True, text=True)
    assert good.returncode == 0 and "Chart Hash Verified" in good.stdout, good.stdout + good.stderr
    # the same chart with one value changed, pushed with the release's provenance file beside it
    work = tmp_path / "bad"
    subprocess.run(["tar", "-xzf", str(released["dist"] / "chart" / f"mender-backup-{__version__}.tgz"), "-C",
                    str(work.parent)], check=True)
    values = work.parent / "mender-backup" / "values.yaml"
    values.write_text(values.read_text().replace("pullPolicy: IfNotPresent", "pullPolicy: Always"))
    work.mkdir()
    subprocess.run([str(helm), "package", str(work.parent / "mender-backup"), "-d", str(work)], check=True,
                   capture_output=True)
    prov = released["dist"] / "chart" / f"mender-backup-{__version__}.tgz.prov"
    (work / prov.name).write_bytes(prov.read_bytes())
    repo = f"oci://{registry.host}/mb/tampered-{helm_name}"
    subprocess.run([str(helm), "push", str(work / f"mender-backup-{__version__}.tgz"), repo, "--plain-http"],
                   check=True, capture_output=True)
    bad = subprocess.run([*pull, f"{repo}/mender-backup", "-d", str(tmp_path / "pulled-bad")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "sha256 sum does not match" in bad.stderr, bad.stdout + bad.stderr


def test_helm_installs_the_released_chart_and_its_pod_pulls_the_image_by_digest_and_backs_up(
        hx, released, registry, minio, tmp_path):
    """The node's containerd pulls the image from the registry (it was never imported under this
    name), the CronJob's Job runs it, and the backup lands in MinIO."""
    from testenv import servers
    kube = hx.cluster
    kube.node.pull_over_plain_http(registry.host)
    assert released["image"] not in kube.node.ctr("images", "ls", "-q")
    ns = f"r-{uuid.uuid4().hex[:8]}"
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    mongo = servers.start_documentdb(tmp_path / "source")
    try:
        mender_data.seed_mongo(mongo.client(), scale=0.02, full_mongodb=True)
        s3 = minio.client()
        bucket, backups = f"art-{uuid.uuid4().hex[:8]}", f"bak-{uuid.uuid4().hex[:8]}"
        mender_data.seed_bucket(s3, bucket, count=2)
        s3.create_bucket(Bucket=backups)
        values = mender_values("5.13.1", mongodb_url=mongo.url, minio=minio, bucket=bucket, unschedulable=True)
        hx("install", "mender", str(chart_file("5.13.1")), "-n", ns, "-f", str(write_values(values, tmp_path / "m.yaml")))
        # the values the plugin would give our chart (its Secrets' keys), installed from the registry
        dry = hx("-n", ns, "mender-backup", "install", "mender", "--destination", f"s3://{backups}/prod",
                 "--dry-run").stdout
        ours, _, command = dry.rstrip().rpartition("\n")                  # the values, then the helm command
        assert " upgrade --install mender-backup " in command
        (tmp_path / "ours.yaml").write_text(ours)
        node = write_values({"hostNetwork": True, "backoffLimit": 0}, tmp_path / "node.yaml")
        hx("install", "mender-backup", released["chart"], "--version", __version__, "--plain-http", "-n", ns,
           "-f", str(tmp_path / "ours.yaml"), "-f", str(node))
        job = run_job(hx, ns)
        outcome = wait_job(kube, ns, job, timeout=300)
        pod = job_pods(kube, ns, job)[0]
        assert outcome["type"] == "Complete", pod_log(kube, ns, pod)
        status = pod["status"]["containerStatuses"][0]
        assert pod["spec"]["containers"][0]["image"] == released["image"]       # what the chart rendered
        assert status["imageID"] == released["image"]                           # what containerd pulled
        pulled = [e for e in kube.get(f"/api/v1/namespaces/{ns}/events")["items"] if e["reason"] == "Pulled"]
        assert any("Successfully pulled" in e["message"] for e in pulled), [e["message"] for e in pulled]
        assert len(manifests(minio, backups)) == 1
    finally:
        mongo.stop()


@pytest.mark.parametrize("platforms, version, says", [
    ("linux/s390x", __version__, "error: platform linux/s390x: linux/amd64 or linux/arm64"),
    ("linux/amd64", "9.9.9", f"error: VERSION=9.9.9 but the tree is at {__version__}: run scripts/set-version.sh 9.9.9"),
])
def test_release_refuses_in_one_line_before_it_builds_anything(keys, platforms, version, says):
    env = {**keys["env"], "RELEASE_PLATFORMS": platforms, "MENDER_BACKUP_SIGNING_KEY": GPG_KEY,
           "MENDER_BACKUP_COSIGN_KEY": str(keys["dir"] / "cosign.key"), "HELM": str(need_tool("helm4")),
           "MENDER_BACKUP_COSIGN_PASSWORD_FILE": str(keys["dir"] / "password"), "IMAGE_SIGN": str(need_tool("image-sign")),
           "SYFT": str(Path(sys.executable).parent / "syft")}                # make venv installs it
    r = subprocess.run([str(ROOT / "scripts" / "release.sh"), version, "registry.invalid/mb"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (2, "") and r.stderr.startswith(says) and r.stderr.count("\n") == 1, r.stderr
