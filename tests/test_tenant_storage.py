"""Per-tenant storage (issue 23): a Mender tenant whose storage settings name a bucket of its
own keeps its artifacts there; backup copies them, the manifest says from which tenant's store
each came (never its credentials), restore puts them back where the settings say or where
--tenant-storage-map moves them, and the restored settings follow.

The settings are the real deployments service's document (`deployment_service-<tenant>`,
collection `settings`, `_id: "settings"`), written here as Mender writes it; the real Mender
case at the end makes them through Mender's own internal API and judges the restore with its
own downloads. Real DocumentDB and MinIO throughout.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from mender_backup.engine import tenant_storage
from mender_backup.errors import UsageError
from mender_backup.redact import scrub
from testenv import servers
from tests import cli, mender_api
from tests.cli import assert_one_line_error, result_of
from tests.test_mender_judges import mender_build  # noqa: F401  (the fixture: the real Mender Server build)


def settings_document(minio, bucket: str, **extra) -> dict:
    """What deployments stores for an S3 tenant (model.StorageSettings; its type is a number)."""
    return {"_id": "settings", "type": 0, "region": "us-east-1", "bucket": bucket, "uri": minio.endpoint,
            "external_uri": "", "key": minio.access_key, "secret": minio.secret_key, "force_path_style": True,
            "use_accelerate": False, **extra}


# -- the settings document, offline -------------------------------------------------------------

def test_a_settings_document_reads_as_mender_wrote_it_and_its_secrets_never_show():
    doc = {"_id": "settings", "type": 1, "bucket": "fleet-a", "key": "acct1",
           "secret": "S3cr3t-account-key-value", "uri": "https://acct1.blob.example/fleet-a",
           "external_uri": "https://cdn.example/fleet-a", "connection_string": None}
    t = tenant_storage.from_document("tenant-a", doc)
    assert (t.type, t.bucket, t.key, t.prefix, t.database) == (
        "azure", "fleet-a", "acct1", "tenant-a/", "deployment_service-tenant-a")
    assert "S3cr3t-account-key-value" not in json.dumps(t.describe()) + repr(t)
    assert "S3cr3t-account-key-value" not in scrub("failed with key S3cr3t-account-key-value")
    moved = t.moved_to("fleet-b")
    # Azure's URIs name the container: they follow it; the secret stays the same
    assert t.changes_to(moved) == {"bucket": "fleet-b", "uri": "https://acct1.blob.example/fleet-b",
                                   "external_uri": "https://cdn.example/fleet-b"}
    assert moved.secret == t.secret


def test_a_connection_strings_account_key_never_shows_even_alone():
    tenant_storage.from_document("t-cs", {"type": 1, "bucket": "fleet-c", "connection_string":
                                          "DefaultEndpointsProtocol=https;AccountName=acct9;AccountKey=a2V5LW9mLXRoZS10ZW5hbnQ="})
    assert "a2V5LW9mLXRoZS10ZW5hbnQ=" not in scrub("an SDK error quoting a2V5LW9mLXRoZS10ZW5hbnQ= alone")


def test_an_s3_tenant_moved_changes_only_its_bucket():
    t = tenant_storage.from_document("t1", {"type": "s3", "bucket": "old-bucket", "uri": "http://s3.local:9000",
                                            "key": "AKIAEXAMPLE", "secret": "abcdefgh"})
    assert t.changes_to(t.moved_to("new-bucket")) == {"bucket": "new-bucket"}


@pytest.mark.parametrize("doc", [{"type": 7, "bucket": "b"}, {"type": "gcs", "bucket": "b"}, {"type": 0},
                                 {"type": [], "bucket": "b"}, {"type": True, "bucket": "b"}, {"bucket": ["b"]}])
def test_settings_that_are_not_menders_are_refused_by_name(doc):
    with pytest.raises(UsageError, match="tenant t9: its storage settings"):
        tenant_storage.from_document("t9", doc)


@pytest.mark.parametrize("pairs, message", [
    (["t1"], "give TENANT=BUCKET"), (["=b"], "give TENANT=BUCKET"), (["t1=a/b"], "give TENANT=BUCKET"),
    (["t1=a", "t1=b"], "names tenant t1 twice")])
def test_a_bad_tenant_storage_map_is_refused(pairs, message):
    with pytest.raises(UsageError, match=message):
        tenant_storage.parse_map(pairs)


# -- backup and restore against DocumentDB and MinIO ---------------------------------------------

def put(minio, bucket: str, key: str, data: bytes) -> None:
    minio.client().put_object(Bucket=bucket, Key=key, Body=data)


def keys(minio, bucket: str) -> dict[str, bytes]:
    s3 = minio.client()
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


@pytest.fixture
def two_tenants(minio, new_mongodb, bucket):
    """Tenant `shared` keeps its artifacts in the release's bucket; tenant `own` in a bucket of
    its own (with one stale object left in the release's bucket from before it moved)."""
    db = new_mongodb()
    own_bucket = f"own-{uuid.uuid4().hex[:10]}"
    minio.client().create_bucket(Bucket=own_bucket)
    client = db.client()
    client["deployment_service-own"]["settings"].insert_one(settings_document(minio, own_bucket))
    client["deployment_service-shared"]["images"].insert_one({"_id": "a1", "name": "shared-1"})
    put(minio, bucket, "shared/a1", b"shared artifact")
    put(minio, own_bucket, "own/b1", b"own artifact, in its own bucket")
    put(minio, own_bucket, "someone-else/x", b"not this tenant's: never copied")
    put(minio, bucket, "own/old", b"left from before the tenant moved")
    return db, own_bucket


def test_each_tenants_artifacts_are_backed_up_from_its_own_store_without_its_credentials(
        minio, two_tenants, bucket, tmp_path):
    db, own_bucket = two_tenants
    dest = (tmp_path / "backups").as_uri()
    r = cli.run("backup", "-d", dest, "--artifacts-bucket", bucket, "--json",
                env={**minio.env(), "MONGODB_URL": db.url})
    bid = result_of(r)["id"]
    manifest = json.loads((tmp_path / "backups" / "backups" / bid / "manifest.json").read_text())
    assert manifest["format_version"] == 4
    assert manifest["tenant_stores"] == {"own": {"type": "s3", "bucket": own_bucket, "uri": minio.endpoint,
                                                 "region": "us-east-1"}}
    assert {a["key"]: a.get("tenant_store") for a in manifest["artifacts"]} == {
        "shared/a1": None, "own/old": None, "own/b1": "own"}
    stored = {p.relative_to(tmp_path / "backups" / "artifacts").as_posix()
              for p in (tmp_path / "backups" / "artifacts").rglob("*") if p.is_file()}
    assert stored == {"shared/a1", "own/old", "own/b1"}
    everything = r.stdout + r.stderr + json.dumps(manifest)
    assert minio.secret_key not in everything
    assert cli.run("verify", bid, "-d", dest, env=minio.env()).returncode == 0


def test_the_restore_moves_a_tenant_into_a_new_bucket_and_its_settings_follow(
        minio, two_tenants, bucket, new_mongodb, tmp_path):
    db, own_bucket = two_tenants
    dest = (tmp_path / "backups").as_uri()
    cli.run("backup", "-d", dest, "--artifacts-bucket", bucket, "--quiet", env={**minio.env(), "MONGODB_URL": db.url})
    target, new_bucket, new_own = new_mongodb(), f"new-{uuid.uuid4().hex[:10]}", f"nown-{uuid.uuid4().hex[:10]}"
    for b in (new_bucket, new_own):
        minio.client().create_bucket(Bucket=b)
    env = {**minio.env(), "MONGODB_URL": target.url}
    args = ("restore", "latest", "-d", dest, "--artifacts-bucket", new_bucket, "--tenant-storage-map", f"own={new_own}")

    plan = result_of(cli.run(*args, "--dry-run", "--json", env=env))
    assert plan["tenant_stores"] == [{"tenant": "own", "type": "s3", "bucket": new_own, "moved_from": own_bucket,
                                      "artifacts": 1, "to_copy": 1, "present": 0}]
    assert keys(minio, new_own) == {}
    assert "deployment_service-own" not in target.client().list_database_names()

    r = cli.run(*args, env=env)
    assert f"artifacts of tenant own: s3 {new_own} (moved from {own_bucket}: its settings follow): copy 1" in r.stdout
    assert keys(minio, new_own) == {"own/b1": b"own artifact, in its own bucket"}
    assert keys(minio, new_bucket) == {"shared/a1": b"shared artifact", "own/old": b"left from before the tenant moved"}
    settings = target.client()["deployment_service-own"]["settings"].find_one({"_id": "settings"})
    assert settings["bucket"] == new_own
    assert settings["secret"] == minio.secret_key          # the rest of the settings as they were
    assert minio.secret_key not in r.stdout + r.stderr


def test_a_restore_that_fails_to_copy_a_tenants_artifacts_leaves_its_settings_as_they_were(
        minio, two_tenants, bucket, new_mongodb, tmp_path):
    """The moved settings are written last: a tenant's settings never name a bucket that lacks
    its artifacts (here the backup lost one: the copy fails, the restore fails, the settings
    still name the tenant's old bucket)."""
    db, own_bucket = two_tenants
    dest = tmp_path / "backups"
    cli.run("backup", "-d", dest.as_uri(), "--artifacts-bucket", bucket, "--quiet", env={**minio.env(), "MONGODB_URL": db.url})
    (dest / "artifacts" / "own" / "b1").unlink()
    target, moved = new_mongodb(), f"nown-{uuid.uuid4().hex[:10]}"
    minio.client().create_bucket(Bucket=moved)
    r = cli.run("restore", "latest", "-d", dest.as_uri(), "--artifacts-bucket", bucket, "--tenant-storage-map",
                f"own={moved}", env={**minio.env(), "MONGODB_URL": target.url}, check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert target.client()["deployment_service-own"]["settings"].find_one()["bucket"] == own_bucket


def test_without_a_map_the_artifacts_go_back_where_the_settings_say(minio, two_tenants, bucket, new_mongodb, tmp_path):
    db, own_bucket = two_tenants
    dest = (tmp_path / "backups").as_uri()
    cli.run("backup", "-d", dest, "--artifacts-bucket", bucket, "--quiet", env={**minio.env(), "MONGODB_URL": db.url})
    minio.client().delete_object(Bucket=own_bucket, Key="own/b1")        # the tenant's bucket lost it
    target = new_mongodb()
    r = cli.run("restore", "latest", "-d", dest, "--artifacts-bucket", bucket, "--json",
                env={**minio.env(), "MONGODB_URL": target.url})
    assert result_of(r)["tenant_stores"][0] == {"tenant": "own", "type": "s3", "bucket": own_bucket,
                                                "artifacts": 1, "to_copy": 1, "present": 0}
    assert keys(minio, own_bucket)["own/b1"] == b"own artifact, in its own bucket"
    assert "someone-else/x" in keys(minio, own_bucket)                   # what is not ours stays


def test_a_map_for_a_tenant_without_its_own_store_is_one_error_line_before_any_write(
        minio, two_tenants, bucket, new_mongodb, tmp_path):
    db, _ = two_tenants
    dest = (tmp_path / "backups").as_uri()
    cli.run("backup", "-d", dest, "--artifacts-bucket", bucket, "--quiet", env={**minio.env(), "MONGODB_URL": db.url})
    target = new_mongodb()
    r = cli.run("restore", "latest", "-d", dest, "--artifacts-bucket", bucket, "--tenant-storage-map", "shared=x-bucket",
                env={**minio.env(), "MONGODB_URL": target.url}, check=False)
    assert_one_line_error(r, 2, "tenant shared has no store of its own in this backup", "those that do: own")
    assert target.client().list_database_names() == []


def test_a_key_in_both_stores_is_taken_from_the_tenants_own_and_the_difference_said(
        minio, two_tenants, bucket, tmp_path):
    db, own_bucket = two_tenants
    put(minio, bucket, "own/b1", b"an older, different copy")
    r = cli.run("backup", "-d", (tmp_path / "b").as_uri(), "--artifacts-bucket", bucket, "--json",
                env={**minio.env(), "MONGODB_URL": db.url})
    assert (tmp_path / "b" / "artifacts" / "own" / "b1").read_bytes() == b"own artifact, in its own bucket"
    warnings = [e["msg"] for e in cli.json_events(r) if e.get("event") == "warning"]
    assert any("artifact own/b1" in w and "the one Mender serves" in w for w in warnings), warnings


def test_a_tenant_on_azure_blob_storage_is_backed_up_and_moved_to_another_container(
        minio, azurite, new_mongodb, bucket, tmp_path):
    """An Azure tenant as deployments stores it (type 1, the account's name and key, the
    container's URL as its URI): read from its container with its own key, moved into
    another container of the same account, its URI following."""
    db = new_mongodb()
    old, new = azurite.create_container(f"t-{uuid.uuid4().hex[:10]}"), azurite.create_container(f"t-{uuid.uuid4().hex[:10]}")
    azurite.service().get_container_client(old).upload_blob("az-tenant/c1", b"an artifact in Azure")
    db.client()["deployment_service-az-tenant"]["settings"].insert_one(
        {"_id": "settings", "type": 1, "bucket": old, "key": azurite.account, "secret": azurite.key,
         "uri": f"{azurite.endpoint}/{old}", "region": "", "force_path_style": False, "use_accelerate": False})
    dest = (tmp_path / "backups").as_uri()
    r = cli.run("backup", "-d", dest, "--artifacts-bucket", bucket, "--json", env={**minio.env(), "MONGODB_URL": db.url})
    assert azurite.key not in r.stdout + r.stderr
    target = new_mongodb()
    cli.run("restore", "latest", "-d", dest, "--artifacts-bucket", bucket, "--tenant-storage-map", f"az-tenant={new}",
            "--quiet", env={**minio.env(), "MONGODB_URL": target.url})
    assert azurite.read(new, "az-tenant/c1") == b"an artifact in Azure"
    settings = target.client()["deployment_service-az-tenant"]["settings"].find_one()
    assert (settings["bucket"], settings["uri"]) == (new, f"{azurite.endpoint}/{new}")


# -- the real Mender judges it -------------------------------------------------------------------

def tenant_jwt(tenant: str) -> str:
    """A management token of a user of `tenant`. Without the API gateway (start.sh runs none) the
    services trust the claims as the gateway would hand them on, unverified (Mender's
    identity.ExtractIdentity): this is how a multi-tenant gateway's request reaches them."""
    def part(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    claims = {"sub": str(uuid.uuid4()), "mender.tenant": tenant, "mender.user": True, "exp": int(time.time()) + 3600}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def upload_artifact(mender, tenant: str, workdir: Path) -> tuple[str, bytes]:
    """A real Mender artifact (mender-artifact) uploaded as `tenant`'s user -> (id, its bytes)."""
    payload, artifact = workdir / f"{tenant}.bin", workdir / f"{tenant}.mender"
    payload.write_bytes(os.urandom(40_000))
    subprocess.run([str(mender.build.prefix / "bin" / "mender-artifact"), "write", "module-image", "-T", "single-file",
                    "-n", f"release-{tenant}", "-t", "judge-device", "-f", str(payload), "-o", str(artifact)],
                   check=True, capture_output=True)
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}",
                        "-H", f"Authorization: Bearer {tenant_jwt(tenant)}", "-F", f"size={artifact.stat().st_size}",
                        "-F", f"artifact=@{artifact};type=application/octet-stream",
                        mender.urls()["deployments"] + "/api/management/v1/deployments/artifacts"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.endswith("201"), r.stdout
    location = next(line for line in r.stdout.splitlines() if line.lower().startswith("location:"))
    return location.strip().rsplit("/", 1)[1], artifact.read_bytes()


def download(mender, tenant: str, artifact_id: str) -> tuple[str, bytes]:
    """Through Mender: the artifact's download link (presigned, into the tenant's store) and its bytes."""
    base = mender.urls()["deployments"] + "/api/management/v1/deployments/artifacts"
    code, body = mender_api.call("GET", f"{base}/{artifact_id}/download",
                                 headers={"Authorization": f"Bearer {tenant_jwt(tenant)}"})
    assert code == 200, (tenant, code, body)
    link = json.loads(body)["uri"]
    with urllib.request.urlopen(link, timeout=30) as r:
        return link, r.read()


def test_real_mender_serves_both_tenants_artifacts_after_a_restore(
        mender_build, minio, new_mongodb, bucket, tmp_path):
    """Tenant `tenant-one` on the release's bucket, `tenant-two` on a bucket of its own (set
    through deployments' internal API, as tenantadm would): each uploads a real artifact
    through Mender; one backup; a restore into a new DocumentDB and bucket that moves
    tenant-two into another bucket; Mender started on the restored stores, with the original
    one stopped, must hand each tenant its own artifact byte for byte, tenant-two's from the
    bucket it was moved to."""
    db_a, own_a, own_b, bucket_b = new_mongodb(), f"own-a-{uuid.uuid4().hex[:8]}", \
        f"own-b-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
    for b in (own_a, own_b, bucket_b):
        minio.client().create_bucket(Bucket=b)
    mender_a = servers.start_mender(mender_build, tmp_path / "mender-a", db_a.url, minio, bucket, tmp_path / "keys")
    try:
        internal = mender_a.urls()["deployments"] + "/api/internal/v1/deployments/tenants"
        for tenant in ("tenant-one", "tenant-two"):
            code, body = mender_api.call("POST", internal, json.dumps({"tenant_id": tenant}).encode(),
                                         {"Content-Type": "application/json"})
            assert code == 201, (code, body)
        settings = {k: v for k, v in settings_document(minio, own_a).items() if k != "_id"} | {"type": "s3"}
        code, body = mender_api.call("PUT", f"{internal}/tenant-two/storage/settings", json.dumps(settings).encode(),
                                     {"Content-Type": "application/json"})
        assert code == 204, (code, body)
        one = upload_artifact(mender_a, "tenant-one", tmp_path)
        two = upload_artifact(mender_a, "tenant-two", tmp_path)
        assert f"tenant-one/{one[0]}" in keys(minio, bucket) and f"tenant-two/{two[0]}" in keys(minio, own_a)
        r = cli.run("backup", "-d", (tmp_path / "backups").as_uri(), "--artifacts-bucket", bucket, "--json",
                    env={**minio.env(), "MONGODB_URL": db_a.url})
        assert result_of(r)["artifacts"] == 2
    finally:
        mender_a.stop()
    db_b = new_mongodb()
    cli.run("restore", "latest", "-d", (tmp_path / "backups").as_uri(), "--artifacts-bucket", bucket_b,
            "--tenant-storage-map", f"tenant-two={own_b}", "--quiet", env={**minio.env(), "MONGODB_URL": db_b.url})
    mender_b = servers.start_mender(mender_build, tmp_path / "mender-b", db_b.url, minio, bucket_b,
                                    tmp_path / "keys", automigrate=False)
    try:
        for tenant, (artifact_id, data), where in (("tenant-one", one, bucket_b), ("tenant-two", two, own_b)):
            link, got = download(mender_b, tenant, artifact_id)
            assert got == data, f"{tenant}'s artifact differs after the restore"
            assert f"/{where}/{tenant}/{artifact_id}" in link, link
    finally:
        mender_b.stop()
