"""Backup and restore against the real servers: DocumentDB (MongoDB semantics, tests/ENVIRONMENT.md) and MinIO."""

from __future__ import annotations

import json

import pytest
from bson import json_util

from testenv import mender_data
from tests import manifests
from tests.cli import assert_one_line_error, json_events, result_of, run

SYSTEM = {"admin", "local", "config"}


def snapshot(client) -> dict:
    """Everything a restore must reproduce, read independently of our code:
    every document (decoded, sorted by _id) and every index (name, key, unique)."""
    out = {}
    for db in sorted(set(client.list_database_names()) - SYSTEM):
        for name in sorted(client[db].list_collection_names()):
            docs = sorted(client[db][name].find(), key=lambda d: json_util.dumps(d["_id"]))
            idx = sorted((i["name"], json.dumps(i["key"], default=str), bool(i.get("unique")))
                         for i in client[db][name].list_indexes())
            out[f"{db}.{name}"] = {"docs": json_util.dumps(docs), "count": len(docs), "indexes": idx}
    return out


def bucket_contents(s3, bucket: str) -> dict[str, bytes]:
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in p.get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def drop_everything(client) -> None:
    for db in set(client.list_database_names()) - SYSTEM:
        client.drop_database(db)


@pytest.fixture
def env(s3):
    return s3.env()


@pytest.fixture
def source(new_mongodb, s3):
    """A Mender-like installation: seeded MongoDB and an artifact bucket, on MinIO and on
    SeaweedFS (the `s3` fixture): each test that takes it runs against both."""
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.5)
    bucket = dest_bucket(s3, "art")
    mender_data.seed_bucket(s3.client(), bucket, count=30)
    return mongo, bucket


def dest_bucket(s3, kind: str = "backups") -> str:
    import uuid
    name = f"{kind}-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=name)
    return name


def _manifest_counts(s3, dest: str, backup_id: str):
    bucket, prefix = dest[len("s3://"):].split("/", 1)
    m = json.loads(s3.client().get_object(Bucket=bucket, Key=f"{prefix}/backups/{backup_id}/manifest.json")
                   ["Body"].read())
    return [(db, c, e["count"]) for db, colls in m["databases"].items() for c, e in colls.items()]


def test_mender_data_follows_the_servers_capabilities(new_ferretdb):
    """FerretDB v1 gets every index of Mender's but the TTL, partial and text ones, and says so."""
    mongo = new_ferretdb()
    client = mongo.client()
    mender_data.seed_mongo(client, scale=0.05)
    left = mender_data.left_out(mender_data.FERRETDB_V1)
    assert set(left) == {"deviceauth.tokens:exp_time", "useradm.tokens:tenant_1_subject_1_name_1",
                         "useradm.tokens:exp_time", "inventory.devices:text",
                         "deployment_service.deployments:deploymentArtifactNameIndex",
                         "deployment_service.deployments:deployment_deploymentconstructor_checksum",
                         "deviceconnect.recordings:RecordingExpire",
                         "iot_manager.log:log_TTL", "deployment_service.images: decimal128 values",
                         "deployment_service.images: '.' in field names (written as '_')"}
    assert mender_data.left_out(mender_data.DOCUMENTDB) == []
    for (db, coll) in mender_data.BASE_COUNTS:
        want = {o["name"] for _, o in mender_data.indexes_for(db, coll)} - {
            n.split(":")[1] for n in left if ":" in n and n.split(":")[0] == f"{db.split('-')[0]}.{coll}"}
        assert set(client[db][coll].index_information()) == want | {"_id_"}, (db, coll)


def test_round_trip_of_the_mender_data_set(source, s3, env):
    mongo, artifacts = source
    client = mongo.client()
    before = snapshot(client)
    art_before = bucket_contents(s3.client(), artifacts)
    # Mender's shape: every per-tenant database, dotted collection names, UUID ids, <tid>/ and .tmp keys
    assert set(mender_data.databases()) == {ns.split(".")[0] for ns in before}
    assert len(before) == len(mender_data.BASE_COUNTS) and len(art_before) == 30
    assert {"deployment_service.devices.logs", "deployment_service-62b1e0f7c9a3d40019ef5678.devices.logs",
            "inventory-5f8a2c3e4b1d7a0012ab34cd.devices", "iot_manager.migration_info"} <= set(before)
    assert client.iot_manager.log.find_one()["_id"].subtype == 4
    assert any("/" in k for k in art_before) and any(k.endswith(".tmp") for k in art_before)
    dest = f"s3://{dest_bucket(s3)}/mender"
    e = {**env, "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": dest}

    r = run("backup", "--artifacts-bucket", artifacts, "--json", env=e)
    backup_id = result_of(r)["id"]
    listed = {(db, c): n for db, c, n in _manifest_counts(s3, dest, backup_id)}
    assert listed == {ns: max(1, int(n * 0.5)) if ns[1] != "migration_info" else n
                      for ns, n in mender_data.BASE_COUNTS.items()}

    drop_everything(client)
    s3c = s3.client()
    for key in art_before:
        s3c.delete_object(Bucket=artifacts, Key=key)
    assert snapshot(client) == {} and bucket_contents(s3c, artifacts) == {}

    r = run("restore", backup_id, "--artifacts-bucket", artifacts, "--json", env=e)
    assert result_of(r)["verified"] is True          # counts and content digests equal the manifest's
    assert snapshot(client) == before                # documents and index sets equal the source's
    assert bucket_contents(s3c, artifacts) == art_before


def index_specs(client) -> dict[str, list[dict]]:
    """Every index with every option (TTL, partial filter, sparse, text weights...), as the server lists it."""
    return {f"{db}.{c}": sorted((json.loads(json_util.dumps({k: v for k, v in i.items() if k not in ("v", "ns")}))
                                 for i in client[db][c].list_indexes()), key=lambda i: i["name"])
            for db in sorted(set(client.list_database_names()) - SYSTEM) for c in client[db].list_collection_names()}


def raw_digests(client) -> dict[str, tuple[int, str]]:
    """(count, sha256 of the sorted raw BSON documents) per collection: the bytes, not a decoding."""
    import hashlib
    from bson.raw_bson import RawBSONDocument
    out = {}
    for db in sorted(set(client.list_database_names()) - SYSTEM):
        for c in client[db].list_collection_names():
            docs = sorted(d.raw for d in client[db].get_collection(c, codec_options=client[db].codec_options.with_options(
                document_class=RawBSONDocument)).find())
            out[f"{db}.{c}"] = (len(docs), hashlib.sha256(b"".join(docs)).hexdigest())
    return out


def test_round_trip_with_mongodb_index_and_type_semantics(new_mongodb, tmp_path):
    """The Mender data set with what FerretDB v1 refuses: TTL, partial, sparse and text indexes,
    decimal128 values, dotted field names. After restore into another server: the same
    counts, the same bytes, the same index sets, and our manifests' digests agree."""
    src, target = new_mongodb(), new_mongodb()
    mender_data.seed_mongo(src.client(), scale=0.2, full_mongodb=True)
    before, indexes = raw_digests(src.client()), index_specs(src.client())
    options = {k for specs in indexes.values() for i in specs for k in i}
    assert {"expireAfterSeconds", "partialFilterExpression", "sparse", "weights"} <= options
    images = src.client()["deployment_service"]["images"]
    assert images.find_one({"meta_artifact.price": {"$type": "decimal"}})
    assert "rootfs-image.version" in images.find_one()["meta_artifact"]["provides"]

    e = {"MONGODB_URL": src.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}/b"}
    first = result_of(run("backup", "--json", env=e))["id"]
    r = run("restore", first, "--json", env={**e, "MENDER_BACKUP_RESTORE_MONGODB_URL": target.url})
    assert result_of(r)["verified"] is True
    assert raw_digests(target.client()) == before
    assert index_specs(target.client()) == indexes
    second = result_of(run("backup", "--json", env={**e, "MONGODB_URL": target.url}))["id"]
    manifests = [json.loads(next((tmp_path / "b").rglob(f"{bid}/manifest.json")).read_text())["databases"]
                 for bid in (first, second)]
    assert manifests[0] == manifests[1] != {}


@pytest.mark.parametrize("compression", ["xz", "gzip", "none"])
def test_round_trip_with_each_compression_to_a_file_destination(new_mongodb, tmp_path, compression):
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.1)
    before = snapshot(mongo.client())
    e = {"MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}/backups"}
    bid = result_of(run("backup", "--compression", compression, "--json", env=e))["id"]
    names = [p.name for p in (tmp_path / "backups" / "backups" / bid).iterdir()]
    assert sorted(names) == sorted(["manifest.json", "mongodb.archive" + {"xz": ".xz", "gzip": ".gz", "none": ""}[compression]])
    run("verify", bid, "--deep", env=e)
    drop_everything(mongo.client())
    run("restore", bid, env=e)
    assert snapshot(mongo.client()) == before


def test_second_backup_copies_only_new_artifacts(source, s3, env):
    mongo, artifacts = source
    dest = f"s3://{dest_bucket(s3)}/inc"
    e = {**env, "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": dest,
         "MENDER_BACKUP_ARTIFACTS_BUCKET": artifacts}
    mender_data.seed_bucket(s3.client(), artifacts, count=170, seed=7)    # 200 artifacts in all
    first = json_events(run("backup", "--json", env=e))
    copied = [ev for ev in first if "artifacts_copied" in ev]
    assert copied[0]["artifacts"] == 200 and copied[0]["artifacts_copied"] == 200

    mender_data.seed_bucket(s3.client(), artifacts, count=2, seed=99)      # 1% new
    second = json_events(run("backup", "--json", env=e))
    copied = [ev for ev in second if "artifacts_copied" in ev]
    assert copied[0]["artifacts"] == 202 and copied[0]["artifacts_copied"] == 2
    listing = result_of(run("list", "--json", env=e))
    assert [b["artifacts"] for b in listing] == [200, 202] and all(b["complete"] for b in listing)


def test_migration_to_another_server_and_bucket(source, new_mongodb, s3, env):
    mongo, artifacts = source
    target = new_mongodb()
    new_bucket = dest_bucket(s3)
    dest = f"s3://{dest_bucket(s3)}/m"
    e = {**env, "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": dest}
    bid = result_of(run("backup", "--artifacts-bucket", artifacts, "--json", env=e))["id"]
    r = run("restore", bid, "--artifacts-bucket", new_bucket, "--json",
            env={**e, "MENDER_BACKUP_RESTORE_MONGODB_URL": target.url})
    assert result_of(r)["verified"]
    assert snapshot(target.client()) == snapshot(mongo.client())
    s3c = s3.client()
    assert bucket_contents(s3c, new_bucket) == bucket_contents(s3c, artifacts)


def test_dry_run_prints_the_plan_and_changes_nothing(source, new_mongodb, s3, env):
    mongo, artifacts = source
    target = new_mongodb()
    target.client().deviceauth.devices.insert_one({"_id": "keep-me"})
    target.client().deviceauth.other.insert_one({"_id": "not-in-backup"})
    dest = f"s3://{dest_bucket(s3)}/d"
    e = {**env, "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": dest}
    bid = result_of(run("backup", "--json", env=e))["id"]
    before = snapshot(target.client())
    r = run("restore", bid, "--drop", "--dry-run", "--json", env={**e, "MONGODB_URL": target.url})
    plan = result_of(r)
    assert plan["dry_run"] is True
    assert {"namespace": "deviceauth.devices", "documents": 1} in plan["drop"]
    assert "deviceauth.other" in plan["untouched"]
    assert len(plan["create"]) == len(mender_data.BASE_COUNTS)
    assert snapshot(target.client()) == before

    # the same with --drop for real: the backup's collections are replaced, others stay
    run("restore", bid, "--drop", env={**e, "MONGODB_URL": target.url})
    assert target.client().deviceauth.other.find_one() == {"_id": "not-in-backup"}
    assert target.client().deviceauth.devices.find_one({"_id": "keep-me"}) is None


def test_vendor_style_archives_restore_without_manifest(new_mongodb, tmp_path):
    """The shape of `mongodump --archive | xz` (and gzip, plain): an archive file with no manifest.
    (Archives of the real mongodump: tests/test_interop.py.)"""
    import subprocess
    src = new_mongodb()
    mender_data.seed_mongo(src.client(), scale=0.1)
    before = snapshot(src.client())
    e = {"MONGODB_URL": src.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}/b"}
    bid = result_of(run("backup", "--compression", "none", "--json", env=e))["id"]
    plain = tmp_path / "b" / "backups" / bid / "mongodb.archive"
    for packer, ext in ((["xz", "-T1", "-c"], ".xz"), (["gzip", "-c"], ".gz"), (None, "")):
        target = new_mongodb()
        path = tmp_path / f"dump.archive{ext}"
        if packer:
            with open(path, "wb") as out:
                subprocess.run([*packer, str(plain)], stdout=out, check=True)
        else:
            path.write_bytes(plain.read_bytes())
        r = run("restore", "--archive", f"file://{path}", "--json", env={"MONGODB_URL": target.url})
        assert result_of(r)["verified"]
        assert snapshot(target.client()) == before


# ---------------------------------------------------------------- refusals


@pytest.fixture
def backed_up(source, s3, env):
    mongo, artifacts = source
    dest_b = dest_bucket(s3)
    e = {**env, "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"s3://{dest_b}/r"}
    bid = result_of(run("backup", "--json", env=e))["id"]
    return mongo, e, bid, dest_b


def test_refuses_non_empty_target_without_drop(backed_up):
    mongo, e, bid, _ = backed_up
    before = snapshot(mongo.client())
    r = run("restore", bid, env=e, check=False)
    assert_one_line_error(r, 4, "not empty", "--drop")
    assert snapshot(mongo.client()) == before


def test_refuses_archive_with_wrong_sha256(backed_up, s3, new_mongodb):
    mongo, e, bid, dest_b = backed_up
    target = new_mongodb()
    s3c = s3.client()
    key = f"r/backups/{bid}/mongodb.archive.zst"
    data = bytearray(s3c.get_object(Bucket=dest_b, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3c.put_object(Bucket=dest_b, Key=key, Body=bytes(data))
    r = run("restore", bid, env={**e, "MONGODB_URL": target.url}, check=False)
    assert_one_line_error(r, 5, "corrupt", "sha256")
    assert set(target.client().list_database_names()) <= {"admin", "local", "config"}
    assert_one_line_error(run("verify", bid, env=e, check=False), 5, "sha256")


def test_refuses_unknown_backup_id(backed_up):
    _, e, _, _ = backed_up
    assert_one_line_error(run("restore", "20200101T000000Z-abcdef", env=e, check=False), 3, "no backup")


def test_refuses_backup_without_manifest(backed_up, s3, new_mongodb):
    mongo, e, bid, dest_b = backed_up
    target = new_mongodb()
    s3.client().delete_object(Bucket=dest_b, Key=f"r/backups/{bid}/manifest.json")
    r = run("restore", bid, env={**e, "MONGODB_URL": target.url}, check=False)
    assert_one_line_error(r, 3, "no manifest", "incomplete")
    assert set(target.client().list_database_names()) <= {"admin", "local", "config"}
    listing = result_of(run("list", "--json", env=e))
    assert [b["complete"] for b in listing if b["id"] == bid] == [False]
    r = run("restore", "latest", env={**e, "MONGODB_URL": target.url}, check=False)
    assert_one_line_error(r, 3, "no complete backup")


@pytest.mark.parametrize("args,envs,code,fragment", [
    (["backup"], {"MONGODB_URL": "mongodb://u:pw@[bad"}, 2, "bad MongoDB URL"),
    (["backup"], {"MONGODB_URL": "http://host"}, 2, "bad MongoDB URL"),
    (["backup", "-d", "ftp://x/y"], {}, 2, "unsupported destination"),
    (["backup", "-d", "s3://"], {}, 2, "bad S3 URL"),
    (["backup", "--compression", "lz4"], {}, 2, "unknown compression"),
    (["restore", "not/an/id"], {}, 2, "bad backup id"),
])
def test_bad_input_is_one_line_and_exit_2(minio, mongodb, args, envs, code, fragment, tmp_path):
    e = {"MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}", **minio.env(), **envs}
    r = run(*args, env=e, check=False)
    line = assert_one_line_error(r, code, fragment)
    assert "pw" not in line


def test_bad_s3_credentials(source, s3, env):
    mongo, artifacts = source
    e = {**env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-key", "MONGODB_URL": mongo.url,
         "MENDER_BACKUP_DESTINATION": f"s3://{dest_bucket(s3)}/x"}
    r = run("backup", env=e, check=False)
    line = assert_one_line_error(r, 6, "access denied")
    assert "wrong-secret-key" not in r.stderr + r.stdout and line


def test_bad_mongodb_credentials(new_mongodb, tmp_path):
    mongo = new_mongodb(user="mender", password="right-password")
    url = mongo.url.replace("right-password", "wrong-password")
    r = run("backup", env={"MONGODB_URL": url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}, check=False)
    assert_one_line_error(r, 6, "authentication failed", "mender:***@")
    assert "wrong-password" not in r.stderr + r.stdout
    assert not list(tmp_path.rglob("manifest.json"))


def test_unreachable_mongodb(minio, tmp_path):
    r = run("backup", env={"MONGODB_URL": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500",
                           "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}, check=False)
    assert_one_line_error(r, 6, "cannot connect to MongoDB")


def test_destination_on_another_s3_service_streams_artifacts(source, s3, env, tmp_path_factory):
    """Backups kept on a second S3 service (MENDER_BACKUP_DEST_AWS_*): no server-side copy is
    possible, artifacts are streamed, and restore streams them back."""
    from testenv import servers
    mongo, artifacts = source
    other = servers.start_minio(tmp_path_factory.mktemp("minio-dest"))
    try:
        other.client().create_bucket(Bucket="offsite")
        e = {**env, "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": "s3://offsite/mender",
             "MENDER_BACKUP_ARTIFACTS_BUCKET": artifacts,
             "MENDER_BACKUP_DEST_AWS_ENDPOINT_URL": other.endpoint,
             "MENDER_BACKUP_DEST_AWS_ACCESS_KEY_ID": other.access_key,
             "MENDER_BACKUP_DEST_AWS_SECRET_ACCESS_KEY": other.secret_key}
        bid = result_of(run("backup", "--json", env=e))["id"]
        stored = {o["Key"] for o in other.client().list_objects_v2(Bucket="offsite")["Contents"]}
        assert sum(k.startswith("mender/artifacts/") for k in stored) == 30
        target = dest_bucket(s3)
        r = run("restore", bid, "--drop", "--json", env={**e, "MENDER_BACKUP_RESTORE_ARTIFACTS_BUCKET": target})
        assert result_of(r)["verified"]
        s3c = s3.client()
        assert bucket_contents(s3c, target) == bucket_contents(s3c, artifacts)
        assert manifests.audit_minio(other) == 1
    finally:
        other.stop()


def test_expired_ttl_documents_restore_and_verify_on_every_run(new_mongodb, tmp_path):
    """DocumentDB's TTL monitor really deletes (within a minute, a pg_cron job). An archive
    whose tokens have expired since it was made is restored: the restore builds the TTL
    indexes only after it has compared counts and digests, so the comparison cannot race
    the monitor; the expired documents are restored, verified and reported as expired.

    Nothing here waits for the clock. The tokens are written already past their TTL, in a
    mongodump archive made by hand (tests/archives.py): a backup taken from a live server
    would need them valid while it runs and expired by the restore, i.e. a real wait (it
    used to be ~14 s). The loader's count check and TTL build are the same for a backup
    and an archive (engine/load.py). Our own side of "expired" is the Loader's clock
    (`now`): judged at a time before the tokens' expiry, none is expired."""
    import datetime as dt
    from mender_backup.engine import load
    from tests import archives
    v = "7.0"
    expired_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    valid_until = expired_at + dt.timedelta(days=30)
    tokens = ([{"_id": i, "exp": {"time": expired_at}, "sub": f"device-{i}"} for i in range(300)]
              + [{"_id": 1000 + i, "exp": {"time": valid_until}} for i in range(20)])
    specs = [archives.index(v, "deviceauth", "tokens", "_id_", {"_id": 1}),
             archives.index(v, "deviceauth", "tokens", "exp_time", {"exp.time": 1}, expireAfterSeconds=0)]
    path = tmp_path / "tokens.archive"
    path.write_bytes(archives.write(v, [{"db": "deviceauth", "collection": "tokens",
                                         "metadata": archives.metadata(v, "deviceauth", "tokens", specs)}],
                                   {("deviceauth", "tokens"): tokens}))
    for _ in range(2):                       # every run, not a lucky one
        target = new_mongodb()
        r = run("restore", "--archive", f"file://{path}", "--json", env={"MONGODB_URL": target.url})
        result = result_of(r)
        assert result["verified"] and result["expired"] == {"deviceauth.tokens": 300}
        assert any(ev.get("expired") == 300 for ev in json_events(r))
        assert "exp_time" in {i["name"] for i in target.client()["deviceauth"]["tokens"].list_indexes()}
    before = expired_at - dt.timedelta(seconds=1)      # the injected clock: nothing was expired yet
    assert load.check_indexes(target.client(), ("deviceauth", "tokens"), specs, None, before) == ("", 0)


def test_restore_from_s3_with_verify_counts_and_a_too_small_tmp(source, new_mongodb, s3, env):
    """A restore from S3 copies the archive to TMPDIR in the read that proves it; a folder too
    small for that copy does not stop the restore: it says so in one warning and reads the
    archive from S3 twice. --verify counts restores and checks the counts only, and says so."""
    mongo, _ = source
    dest = f"s3://{dest_bucket(s3)}/v"
    e = {**env, "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": dest}
    bid = result_of(run("backup", "--json", env=e))["id"]
    for limit in ("1Ki", ""):
        target = new_mongodb()
        r = run("restore", bid, "--verify", "counts", "--json",
                env={**e, "MONGODB_URL": target.url, "MENDER_BACKUP_TMP_LIMIT": limit})
        res = result_of(r)
        assert res["verified"] and res["verify"] == "counts"
        assert snapshot(target.client()) == snapshot(mongo.client())
        warned = [ev for ev in json_events(r) if "reading it from the store twice" in json.dumps(ev)]
        assert len(warned) == (1 if limit else 0), json_events(r)
    human = run("restore", bid, "--drop", env={**e, "MONGODB_URL": target.url, "MENDER_BACKUP_TMP_LIMIT": "1Ki"})
    assert "verified: counts and content digests match the backup" in human.stdout
    r = run("restore", bid, "--verify", "some", env={**e, "MONGODB_URL": target.url}, check=False)
    assert r.returncode == 2 and "--verify some" in r.stderr
