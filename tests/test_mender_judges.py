"""The real Mender Server judges our restores (../shared/mender-server: the v4.1.3 backend
built from source, run on the suite's DocumentDB and MinIO; no Kubernetes, no gateway).

Mender A is seeded through its own APIs (`smoke.sh seed`: a user, an accepted device, an
artifact in S3, a deployment) and backed up with `mender-backup backup`; the backup is
restored into a fresh DocumentDB and a new bucket, Mender B starts on them with A's
signing keys and without migrations, and `smoke.sh verify` must pass every check: the
same password logs in, old tokens still verify, the device authenticates, the artifact
downloads byte for byte, the device is offered its deployment. Restores that lose
something (new keys, no artifacts) must fail the check that names the loss.

Also: the data generator (testenv/mender_data.py) builds the indexes and migration_info
the real services' migrations build, and `mender-backup verify --mender` reads each
service's health endpoint.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from testenv import mender_data, servers
from tests import cli
from tests.conftest import IN_CI, _need_documentdb

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def mender_build() -> servers.MenderBuild:
    try:
        return servers.mender_server()
    except servers.ToolMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def start_mender(mender_build, minio, tmp_path_factory):
    """start(mongo_url, bucket, keys_dir=None, automigrate=True) -> a running Mender, stopped
    (stop.sh --purge) when the test ends: no Mender process outlives its test."""
    started: list[servers.Mender] = []

    def start(mongo_url: str, bucket: str, keys_dir: Path | None = None, automigrate: bool = True):
        m = servers.start_mender(mender_build, tmp_path_factory.mktemp("mender-run"), mongo_url, minio, bucket,
                                 keys_dir, automigrate)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


def new_bucket(minio) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    minio.client().create_bucket(Bucket=name)
    return name


@dataclass(frozen=True)
class Seeded:
    """Mender A, seeded, backed up twice (plain and encrypted), then stopped."""
    state: Path         # smoke.sh's STATE_DIR: what seed made (user, device key, artifact, ids)
    keys: Path          # A's JWT signing keys (KEYS_DIR)
    plain: str          # file:// destination of the plain backup
    encrypted: str      # ... and of the encrypted one
    key: str            # its MENDER_BACKUP_ENCRYPTION_KEY
    bucket: str         # A's artifact bucket


@pytest.fixture(scope="module")
def seeded(mender_build, minio, tmp_path_factory) -> Seeded:
    """Once per module (the cases restore the same backups): DocumentDB A (the suite's
    MongoDB) and bucket A, Mender A seeded, backed up plain and encrypted; then A stopped,
    so that B cannot lean on anything A still serves."""
    _need_documentdb()
    base = tmp_path_factory.mktemp("judged")
    db_a, bucket_a, keys = servers.start_documentdb(base / "documentdb-a"), new_bucket(minio), base / "keys-a"
    try:
        mender_a = servers.start_mender(mender_build, base / "mender-a", db_a.url, minio, bucket_a, keys)
        try:
            seed = mender_a.smoke("seed", base / "state")
            assert seed.returncode == 0, seed.stdout + seed.stderr
            key = cli.run("key", "generate").stdout.strip()
            plain, encrypted = (base / "plain").as_uri(), (base / "encrypted").as_uri()
            env = {**minio.env(), "MONGODB_URL": db_a.url}
            cli.run("backup", "-d", plain, "--artifacts-bucket", bucket_a, "--quiet", env=env)
            cli.run("backup", "-d", encrypted, "--artifacts-bucket", bucket_a, "--quiet",
                    env={**env, "MENDER_BACKUP_ENCRYPTION_KEY": key})
        finally:
            mender_a.stop()
    finally:
        db_a.stop()
    return Seeded(base / "state", keys, plain, encrypted, key, bucket_a)


def restore_and_start(seeded: Seeded, new_mongodb, start_mender, minio, tmp_path: Path, source: str,
                      artifacts: bool = True, keys_dir: Path | None = None, key: str | None = None):
    """Restore into a fresh DocumentDB and bucket; Mender B on them, no migrations."""
    db_b, bucket_b = new_mongodb(), new_bucket(minio)
    env = {**minio.env(), "MONGODB_URL": db_b.url, **({"MENDER_BACKUP_ENCRYPTION_KEY": key} if key else {})}
    cli.run("restore", "latest", "-d", source, *(["--artifacts-bucket", bucket_b] if artifacts else []),
            "--quiet", env=env)
    mender_b = start_mender(db_b.url, bucket_b, keys_dir=keys_dir or tmp_path / "new-keys", automigrate=False)
    state = tmp_path / "state"
    shutil.copytree(seeded.state, state)    # verify runs on a copy: every case starts from the seed
    return mender_b, state


def fails(verify) -> list[str]:
    return [line for line in verify.stdout.splitlines() if line.startswith("FAIL")]


def test_mender_accepts_a_restore_with_the_original_keys(seeded, new_mongodb, start_mender, minio, tmp_path):
    mender_b, state = restore_and_start(seeded, new_mongodb, start_mender, minio, tmp_path, seeded.plain,
                                        keys_dir=seeded.keys)
    verify = mender_b.smoke("verify", state)
    assert verify.returncode == 0 and not fails(verify), verify.stdout + verify.stderr
    assert verify.stdout.count("ok    verify:") == 11, verify.stdout


@pytest.mark.parametrize("loss, expected", [
    ("new keys", ["verify: old user token: 401", "verify: old device token: 401"]),
    ("no artifacts", ["verify: artifact download: 500", "verify: next deployment for the device: 500"]),
])
def test_mender_rejects_a_restore_that_lost_something(seeded, new_mongodb, start_mender, minio, tmp_path,
                                                      loss, expected):
    """The judge can fail: each loss is named by the checks that need what was lost, and
    only by them (the rest of the restore still works)."""
    mender_b, state = restore_and_start(seeded, new_mongodb, start_mender, minio, tmp_path, seeded.plain,
                                        artifacts=loss != "no artifacts",
                                        keys_dir=None if loss == "new keys" else seeded.keys)
    verify = mender_b.smoke("verify", state, env={"WAIT_S": "20"})
    assert verify.returncode == 1, verify.stdout
    got = fails(verify)
    assert len(got) == len(expected), verify.stdout
    for line, want in zip(got, expected):
        assert line.startswith(f"FAIL  {want}"), verify.stdout


def test_mender_accepts_a_restore_of_an_encrypted_backup(seeded, new_mongodb, start_mender, minio, tmp_path):
    mender_b, state = restore_and_start(seeded, new_mongodb, start_mender, minio, tmp_path, seeded.encrypted,
                                        keys_dir=seeded.keys, key=seeded.key)
    verify = mender_b.smoke("verify", state)
    assert verify.returncode == 0 and not fails(verify), verify.stdout + verify.stderr


def test_mender_accepts_keys_restored_by_secrets_into_a_namespace_without_them(
        seeded, kube_cluster, new_mongodb, start_mender, minio, tmp_path):
    """The signing keys travel only through our encrypted backup: A's keys are the Secrets
    rsa-useradm / rsa-device-auth of a namespace (as the chart makes them), backed up with
    --mender-secrets; `restore --secrets` writes them into another namespace that has none;
    Mender B starts with the keys read back from those Secrets, and every check passes
    (tokens signed by A before the backup verify)."""
    import base64
    key = cli.run("key", "generate").stdout.strip()
    source_ns, target_ns = (f"judge-{uuid.uuid4().hex[:6]}" for _ in range(2))
    for ns in (source_ns, target_ns):
        kube_cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": ns}})
    for name, pem in (("rsa-useradm", "useradm.pem"), ("rsa-device-auth", "deviceauth.pem")):
        kube_cluster.request("POST", f"/api/v1/namespaces/{source_ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {"private.pem": base64.b64encode((seeded.keys / pem).read_bytes()).decode()}})

    # the data from the module's plain backup, into a DocumentDB that then gets backed up with
    # the keys (Mender A is gone: this is the same data, now with its Secrets beside it)
    db = new_mongodb()
    cli.run("restore", "latest", "-d", seeded.plain, "--quiet", env={**minio.env(), "MONGODB_URL": db.url})
    dest = (tmp_path / "with-secrets").as_uri()
    kenv = {"KUBECONFIG": str(kube_cluster.kubeconfig), "MENDER_BACKUP_ENCRYPTION_KEY": key}
    cli.run("backup", "-d", dest, "--artifacts-bucket", seeded.bucket, "--mender-secrets", "default",
            "--mender-namespace", source_ns, "--quiet", env={**minio.env(), **kenv, "MONGODB_URL": db.url})

    db_b, bucket_b = new_mongodb(), new_bucket(minio)
    cli.run("restore", "latest", "-d", dest, "--artifacts-bucket", bucket_b, "--secrets",
            "--secrets-namespace", target_ns, "--quiet", env={**minio.env(), **kenv, "MONGODB_URL": db_b.url})
    keys = tmp_path / "keys-from-secrets"
    keys.mkdir(mode=0o700)
    for name, pem in (("rsa-useradm", "useradm.pem"), ("rsa-device-auth", "deviceauth.pem")):
        data = kube_cluster.get(f"/api/v1/namespaces/{target_ns}/secrets/{name}")["data"]["private.pem"]
        (keys / pem).write_bytes(base64.b64decode(data))
    mender_b = start_mender(db_b.url, bucket_b, keys_dir=keys, automigrate=False)
    state = tmp_path / "state"
    shutil.copytree(seeded.state, state)
    verify = mender_b.smoke("verify", state)
    assert verify.returncode == 0 and not fails(verify), verify.stdout + verify.stderr
    assert verify.stdout.count("ok    verify:") == 11, verify.stdout


# --- the generator builds what Mender's migrations build ----------------------------------

INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds", "weights",
                 "default_language", "language_override")


def index_set(client, databases) -> dict[str, dict]:
    """db.collection -> index name -> its keys and the options that change what it does."""
    out: dict[str, dict] = {}
    for db in databases:
        for coll in client[db].list_collection_names():
            for ix in client[db][coll].list_indexes():
                if ix["name"] == "_id_":
                    continue
                out.setdefault(f"{db}.{coll}", {})[ix["name"]] = {
                    "key": list(ix["key"].items()), **{o: ix[o] for o in INDEX_OPTIONS if o in ix}}
    return out


def migrations(client, databases) -> dict[str, list[str]]:
    """db -> the versions its migration_info records, oldest first, and each document's fields."""
    return {db: sorted((f"{d['version']['major']}.{d['version']['minor']}.{d['version']['patch']}"
                        for d in client[db].migration_info.find()),
                       key=lambda v: tuple(int(x) for x in v.split(".")))
            for db in databases if "migration_info" in client[db].list_collection_names()}


def test_the_generator_builds_the_indexes_and_migrations_mender_builds(new_mongodb, start_mender, minio):
    real_db, generated_db = new_mongodb(), new_mongodb()
    mender = start_mender(real_db.url, new_bucket(minio))          # start.sh's default: --automigrate
    mender.stop()
    mender_data.seed_mongo(generated_db.client(), scale=0.02, capabilities=mender_data.DOCUMENTDB)
    service_dbs = [db for db in dict.fromkeys(d for d, _ in mender_data.SHAPE) if "<tid>" not in db]

    real, generated = real_db.client(), generated_db.client()
    assert index_set(generated, service_dbs) == index_set(real, service_dbs)
    assert migrations(generated, service_dbs) == migrations(real, service_dbs)
    fields = {db: sorted(real[db].migration_info.find_one({}, {"_id": 0}).keys()) for db in service_dbs}
    assert fields == {db: sorted(generated[db].migration_info.find_one({}, {"_id": 0}).keys())
                      for db in service_dbs}


# --- mender-backup verify --mender: the health of each service ----------------------------

def test_verify_mender_reports_each_service_and_names_the_unhealthy_one(new_mongodb, start_mender, minio):
    mender = start_mender(new_mongodb().url, new_bucket(minio))
    urls = mender.urls()
    args = ["verify", *[a for s, u in urls.items() for a in ("--mender", f"{s}={u}")]]

    healthy = cli.run(*args)
    lines = healthy.stdout.splitlines()
    assert len(lines) == len(servers.MENDER_SERVICES), healthy.stdout
    assert all(line.startswith("ok  ") and "healthy (204)" in line for line in lines), healthy.stdout

    # the same list comma-separated in the environment, as a pod would have it
    env_run = cli.run("verify", "--json", env={"MENDER_BACKUP_VERIFY_MENDER": ",".join(
        f"{s}={u}" for s, u in urls.items())})
    assert cli.result_of(env_run)["healthy"] is True

    mender.stop_service("deviceconfig")
    sick = cli.run(*args, check=False)
    error = cli.assert_one_line_error(sick, 1, "Mender services unhealthy", "deviceconfig (unreachable")
    by_service = {line.split()[1]: line for line in sick.stdout.splitlines()}
    assert by_service["deviceconfig"].startswith("FAIL") and "Connection refused" in by_service["deviceconfig"]
    assert by_service["useradm"].startswith("ok"), sick.stdout
    assert "useradm" not in error


def test_verify_mender_reads_the_service_from_the_host_name_or_refuses():
    """No server needed: which service a URL is, and the one-line refusals (exit 2)."""
    from mender_backup.engine.health import parse_targets
    got = parse_targets(["http://mender-useradm:8080, http://mender-device-auth:8080/",
                         "https://iot_manager.example.com", "workflows=http://10.0.0.7:8080"])
    assert [(t.service, t.health_url) for t in got] == [
        ("useradm", "http://mender-useradm:8080/api/internal/v1/useradm/health"),
        ("deviceauth", "http://mender-device-auth:8080/api/internal/v1/devauth/health"),
        ("iot-manager", "https://iot_manager.example.com/api/internal/v1/iot-manager/health"),
        ("workflows", "http://10.0.0.7:8080/api/v1/health")]
    r = cli.run("verify", "--mender", "http://10.0.0.7:8080", check=False)
    cli.assert_one_line_error(r, 2, "cannot tell which Mender service", "SERVICE=URL")
    r = cli.run("verify", "--mender", "gui=http://10.0.0.7:8080", check=False)
    cli.assert_one_line_error(r, 2, "unknown Mender service 'gui'")
