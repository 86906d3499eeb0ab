"""Azure Blob Storage, as Mender's artifact store and as a destination, against Azurite
(Microsoft's emulator, testenv/azure_blob.py): the real SDK talking to a real Blob service.
Azurite is not Azure: tests/ENVIRONMENT.md says what it leaves out (no lifecycle, no
managed identity, no throttling of its own; the fault proxy supplies the failures).
"""

from __future__ import annotations

import uuid

import pytest

from testenv import mender_data
from tests import cli
from tests.cli import assert_one_line_error, json_events, result_of, run
from tests.test_backup_restore import bucket_contents, snapshot
from tests.test_mender_judges import mender_build  # noqa: F401  (the fixture: the real Mender Server build)


@pytest.fixture
def mender_on_azure(new_mongodb, azurite):
    """A Mender-like installation whose artifacts are in an Azure container (global.storage: azure)."""
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.2)
    container = f"artifacts-{uuid.uuid4().hex[:8]}"
    azurite.seed(container, count=25)
    return mongo, container


def secrets_absent(azurite, *runs) -> None:
    for r in runs:
        assert azurite.key not in r.stdout + r.stderr


def test_artifacts_in_azure_backed_up_to_azure_and_restored_into_a_new_container(
        mender_on_azure, azurite, container, new_mongodb):
    mongo, artifacts = mender_on_azure
    target, new_container = new_mongodb(), f"restored-{uuid.uuid4().hex[:8]}"
    azurite.create_container(new_container)
    e = {**azurite.env(), "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": azurite.url(container, "mender"),
         "MENDER_BACKUP_ARTIFACTS_BUCKET": azurite.url(artifacts)}
    backup = run("backup", "--json", env=e)
    bid = result_of(backup)["id"]
    names = azurite.blobs(container, "mender/")
    assert f"mender/backups/{bid}/manifest.json" in names
    assert {k for k in names if "/artifacts/" in k} == {f"mender/artifacts/{k}" for k in azurite.blobs(artifacts)}

    listing = run("list", "--json", env=e)
    assert [(b["id"], b["complete"], b["artifacts"]) for b in result_of(listing)] == [(bid, True, 25)]
    verify = run("verify", bid, "--deep", "--json", env=e)
    restore = run("restore", bid, "--artifacts-bucket", azurite.url(new_container), "--json",
                  env={**e, "MENDER_BACKUP_RESTORE_MONGODB_URL": target.url})
    assert result_of(restore)["verified"]
    assert snapshot(target.client()) == snapshot(mongo.client())
    assert azurite.blobs(new_container) == azurite.blobs(artifacts)
    for name in azurite.blobs(artifacts):
        assert azurite.read(new_container, name) == azurite.read(artifacts, name)
    secrets_absent(azurite, backup, listing, verify, restore)


def test_a_second_backup_copies_only_new_artifacts_within_the_account(mender_on_azure, azurite, container):
    mongo, artifacts = mender_on_azure
    e = {**azurite.env(), "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": azurite.url(container, "inc"),
         "MENDER_BACKUP_ARTIFACTS_BUCKET": azurite.url(artifacts)}
    first = [ev for ev in json_events(run("backup", "--json", env=e)) if "artifacts_copied" in ev]
    assert (first[0]["artifacts"], first[0]["artifacts_copied"]) == (25, 25)
    azurite.seed(artifacts, count=2, seed=99)
    second = [ev for ev in json_events(run("backup", "--json", env=e)) if "artifacts_copied" in ev]
    assert (second[0]["artifacts"], second[0]["artifacts_copied"]) == (27, 2)


def test_artifacts_in_s3_backed_up_to_azure_with_the_destinations_own_key(
        new_mongodb, minio, bucket, azurite, container):
    """The source's credentials (AWS_*) and the destination's (MENDER_BACKUP_DEST_AZURE_*) apart."""
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.1)
    mender_data.seed_bucket(minio.client(), bucket, count=10)
    e = {**minio.env(), **azurite.env("MENDER_BACKUP_DEST_"), "MONGODB_URL": mongo.url,
         "MENDER_BACKUP_DESTINATION": azurite.url(container), "MENDER_BACKUP_ARTIFACTS_BUCKET": bucket}
    bid = result_of(run("backup", "--json", env=e))["id"]
    new_bucket = f"r-{uuid.uuid4().hex[:10]}"
    minio.client().create_bucket(Bucket=new_bucket)
    target = new_mongodb()
    run("restore", bid, "--artifacts-bucket", new_bucket, env={**e, "MENDER_BACKUP_RESTORE_MONGODB_URL": target.url})
    s3 = minio.client()
    assert bucket_contents(s3, new_bucket) == bucket_contents(s3, bucket)
    assert snapshot(target.client()) == snapshot(mongo.client())


def test_a_connection_string_works_and_never_shows(mender_on_azure, azurite, container):
    mongo, _ = mender_on_azure
    e = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(), "MONGODB_URL": mongo.url,
         "MENDER_BACKUP_DESTINATION": azurite.url(container)}
    backup = run("backup", "--json", env=e)
    listing = run("list", "--json", env=e)
    assert [b["id"] for b in result_of(listing)] == [result_of(backup)["id"]]
    other = run("list", env={**e, "MENDER_BACKUP_DESTINATION": f"azure://someoneelse/{container}"}, check=False)
    assert_one_line_error(other, 2, "the connection string is for account 'mbtestaccount', not 'someoneelse'")
    secrets_absent(azurite, backup, listing, other)


@pytest.mark.parametrize("case,env,code,said", [
    ("no such container", {}, 3, "container 'nope' does not exist"),
    ("a wrong key", {"AZURE_STORAGE_KEY": "d3Jvbmcga2V5IG9mIDMyIGJ5dGVzLCBub3QgdGhlIHJpZ2h0IG9uZQ=="}, 6,
     "access denied"),
    ("a bad URL", {"MENDER_BACKUP_DESTINATION": "azure://onlyaccount"}, 2, "use azure://account/container/prefix"),
])
def test_errors_are_one_line_with_their_exit_code(azurite, case, env, code, said):
    e = {**azurite.env(), "MENDER_BACKUP_DESTINATION": azurite.url("nope"), **env}
    r = run("list", env=e, check=False)
    assert_one_line_error(r, code, said)
    secrets_absent(azurite, r)


@pytest.mark.timeout(900)
def test_real_mender_on_azure_serves_the_restored_container(mender_build, azurite, new_mongodb, tmp_path):  # noqa: F811
    """The real deployments service (v4.1.3) keeps artifacts in an Azurite container; seeded
    through Mender's APIs, backed up, restored into a new DocumentDB and a new container, and
    Mender B started on them with A's keys and no migrations passes smoke.sh verify: the
    artifact downloads byte-identical through the SAS URL Mender signs for the new container."""
    from testenv import servers
    from testenv.azure_blob import mender_on_azure

    container_a, container_b = (azurite.create_container(f"{n}-{uuid.uuid4().hex[:8]}") for n in ("mender", "restored"))
    db_a, db_b, keys = new_mongodb(), new_mongodb(), tmp_path / "keys-a"
    script, storage = mender_on_azure(mender_build.start, tmp_path / "start-azure-a.sh", azurite, container_a)
    mender_a = servers.start_mender(mender_build, tmp_path / "mender-a", db_a.url, None, container_a, keys,
                                    script=script, storage_env=storage)
    try:
        seed = mender_a.smoke("seed", tmp_path / "state")
        assert seed.returncode == 0, seed.stdout + seed.stderr
        assert azurite.blobs(container_a), "Mender put no artifact into the container"
        dest = (tmp_path / "backups").as_uri()
        cli.run("backup", "-d", dest, "--artifacts-bucket", azurite.url(container_a), "--quiet",
                env={**azurite.env(), "MONGODB_URL": db_a.url})
    finally:
        mender_a.stop()
    restore = cli.run("restore", "latest", "-d", dest, "--artifacts-bucket", azurite.url(container_b), "--json",
                      env={**azurite.env(), "MONGODB_URL": db_b.url})
    assert cli.result_of(restore)["verified"]
    script, storage = mender_on_azure(mender_build.start, tmp_path / "start-azure-b.sh", azurite, container_b)
    mender_b = servers.start_mender(mender_build, tmp_path / "mender-b", db_b.url, None, container_b, keys,
                                    automigrate=False, script=script, storage_env=storage)
    try:
        verify = mender_b.smoke("verify", tmp_path / "state")
    finally:
        mender_b.stop()
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "FAIL" not in verify.stdout and verify.stdout.count("ok ") >= 10, verify.stdout
    assert f"/{container_b}/" in verify.stdout         # the download came from the restored container
