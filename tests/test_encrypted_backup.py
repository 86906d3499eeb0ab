"""Encrypted backups end to end, against the suite's MongoDB (DocumentDB) and MinIO: the Mender data set through
backup, restore and verify; the stored bytes show nothing of it; a missing or wrong key
fails in one line (exit 6) before anything is written; a flipped byte is an integrity
failure (exit 5), caught by the checksum and, with the checksum forged, by the AEAD;
key rotation reads old backups with the old key."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest

from mender_backup.format.encryption import Key
from testenv import mender_data
from tests.cli import assert_one_line_error, result_of, run
from tests.test_backup_restore import SYSTEM, bucket_contents, drop_everything, snapshot

KEY_A = Key(hashlib.sha256(b"test key A").digest())
KEY_B = Key(hashlib.sha256(b"test key B").digest())


def field_names(min_len: int = 4) -> set[str]:
    """Every field name of the Mender data set (nested ones too), of at least min_len
    characters (shorter ones turn up in random bytes by chance)."""
    names: set[str] = set()

    def walk(v) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                names.add(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for _db, _coll, docs in mender_data.documents(scale=0.2):
        for d in docs:
            walk(d)
    return {n for n in names if len(n) >= min_len}


def stored_objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in bucket_contents(s3, bucket).items() if k.startswith(prefix)}


@pytest.fixture
def mender(new_mongodb, minio, bucket):
    mongo = new_mongodb()
    mender_data.seed_mongo(mongo.client(), scale=0.2)
    mender_data.seed_bucket(minio.client(), bucket, count=10)
    dest_bucket = f"enc-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=dest_bucket)
    env = {**minio.env(), "MONGODB_URL": mongo.url, "MENDER_BACKUP_DESTINATION": f"s3://{dest_bucket}/mender",
           "MENDER_BACKUP_ARTIFACTS_BUCKET": bucket}
    return mongo, bucket, dest_bucket, env


def with_key(env: dict, *keys: Key) -> dict:
    return {**env, "MENDER_BACKUP_ENCRYPTION_KEY": ",".join(k.to_base64() for k in keys)}


def test_encrypted_round_trip_through_minio(mender, minio):
    mongo, artifacts, dest_bucket, env = mender
    client, s3 = mongo.client(), minio.client()
    before, art_before = snapshot(client), bucket_contents(s3, artifacts)
    e = with_key(env, KEY_A)

    # raw BSON (no compression) is the plaintext most likely to show through
    r = run("backup", "--compression", "none", "--json", env=e)
    out = result_of(r)
    bid = out["id"]
    assert out["key_fingerprint"] == KEY_A.fingerprint
    manifest = json.loads(s3.get_object(Bucket=dest_bucket, Key=f"mender/backups/{bid}/manifest.json")["Body"].read())
    assert manifest["format_version"] == 2
    assert manifest["encryption"] == {"algorithm": "aes-256-gcm-stream", "key_fingerprint": KEY_A.fingerprint}
    assert manifest["archive"]["key"] == "mongodb.archive.enc"
    stored = stored_objects(s3, dest_bucket, f"mender/backups/{bid}/")
    archive = stored[f"mender/backups/{bid}/mongodb.archive.enc"]
    assert archive.startswith(b"MBENC1")

    names = field_names()
    assert len(names) > 30
    leaked = sorted(n for n in names if n.encode() in archive)
    assert leaked == [], leaked
    assert KEY_A.to_base64().encode() not in b"".join(stored.values())
    for text in (r.stdout, r.stderr):
        assert KEY_A.to_base64() not in text

    # the same check on a plain backup finds the names: it can fail
    plain_id = result_of(run("backup", "--compression", "none", "--json", env=env))["id"]
    plain = s3.get_object(Bucket=dest_bucket, Key=f"mender/backups/{plain_id}/mongodb.archive")["Body"].read()
    assert sorted(n for n in names if n.encode() in plain) == sorted(names)

    drop_everything(client)
    for k in art_before:
        s3.delete_object(Bucket=artifacts, Key=k)
    r = run("restore", bid, "--json", env=e)
    assert result_of(r)["verified"] is True
    assert snapshot(client) == before
    assert bucket_contents(s3, artifacts) == art_before

    r = run("verify", bid, "--deep", env=e)
    assert f"encrypted with key {KEY_A.fingerprint}" in r.stdout and "every segment authenticated" in r.stdout
    listing = {row["id"]: row for row in result_of(run("list", "--json", env=e))}
    assert listing[bid]["encryption"] == {"algorithm": "aes-256-gcm-stream", "key_fingerprint": KEY_A.fingerprint,
                                          "key_available": True}
    assert listing[plain_id]["encryption"] is None


def _target_untouched(client) -> None:
    assert set(client.list_database_names()) - SYSTEM == set()


def test_missing_and_wrong_key_fail_in_one_line_before_any_write(mender, new_mongodb):
    mongo, _artifacts, _dest, env = mender
    bid = result_of(run("backup", "--json", env=with_key(env, KEY_A)))["id"]
    target = new_mongodb()
    t_env = {**env, "MENDER_BACKUP_RESTORE_MONGODB_URL": target.url}

    r = run("restore", bid, env=t_env, check=False)
    assert_one_line_error(r, 6, f"backup {bid} is encrypted with key {KEY_A.fingerprint}", "no key given",
                          "MENDER_BACKUP_ENCRYPTION_KEY")
    _target_untouched(target.client())
    r = run("restore", bid, env=with_key(t_env, KEY_B), check=False)
    assert_one_line_error(r, 6, f"encrypted with key {KEY_A.fingerprint}", KEY_B.fingerprint, "wrong key")
    _target_untouched(target.client())

    # verify names the key a backup needs (what an operator rotating keys looks for)
    r = run("verify", bid, env=env, check=False)
    assert_one_line_error(r, 6, f"encrypted with key {KEY_A.fingerprint}")
    r = run("verify", bid, "--deep", env=with_key(env, KEY_B), check=False)
    assert_one_line_error(r, 6, "wrong key")
    # list: without a key, or with only a wrong one, one line naming the key(s) needed
    r = run("list", env=env, check=False)
    assert_one_line_error(r, 6, f"encrypted with key(s) {KEY_A.fingerprint}", "no key given")
    r = run("list", env=with_key(env, KEY_B), check=False)
    assert_one_line_error(r, 6, f"encrypted with key(s) {KEY_A.fingerprint}", KEY_B.fingerprint, "wrong key")
    # with one key of a rotation, it lists and marks the backups that need another
    run("backup", env=with_key(env, KEY_B))
    r = run("list", env=with_key(env, KEY_B))
    assert f"{KEY_A.fingerprint[:12]} (missing)" in r.stdout and KEY_B.fingerprint[:12] in r.stdout
    # a plain backup beside them: listed with no key at all, the encrypted ones marked as needing theirs
    plain = result_of(run("backup", "--json", env=env))["id"]
    rows = result_of(run("list", "--json", env=env))
    assert [x["id"] for x in rows if x["encryption"] is None] == [plain]
    assert [x["encryption"]["key_available"] for x in rows if x["encryption"]] == [False, False]

    # a key that is not a key: usage error, its value never printed
    bad = "bm90IGEga2V5"
    r = run("restore", bid, env={**t_env, "MENDER_BACKUP_ENCRYPTION_KEY": bad}, check=False)
    assert_one_line_error(r, 2, "MENDER_BACKUP_ENCRYPTION_KEY", "32")
    assert bad not in r.stderr
    _target_untouched(target.client())


def _flip(s3, bucket: str, key: str, at: int) -> bytes:
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[at] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    return bytes(body)


def test_a_flipped_byte_is_an_integrity_failure(mender, minio, new_mongodb):
    mongo, _artifacts, dest_bucket, env = mender
    s3 = minio.client()
    e = with_key(env, KEY_A)
    bid = result_of(run("backup", "--json", env=e))["id"]
    key = f"mender/backups/{bid}/mongodb.archive.zst.enc"
    size = len(s3.get_object(Bucket=dest_bucket, Key=key)["Body"].read())
    target = new_mongodb()
    t_env = {**e, "MENDER_BACKUP_RESTORE_MONGODB_URL": target.url}

    corrupt = _flip(s3, dest_bucket, key, size // 2)
    r = run("restore", bid, env=t_env, check=False)
    assert_one_line_error(r, 5, "is corrupt: sha256")
    _target_untouched(target.client())
    assert_one_line_error(run("verify", bid, env=e, check=False), 5, "sha256")

    # the checksum forged to match: the AEAD still refuses the changed segment
    mkey = f"mender/backups/{bid}/manifest.json"
    m = json.loads(s3.get_object(Bucket=dest_bucket, Key=mkey)["Body"].read())
    original = json.dumps(m).encode()
    m["archive"]["sha256"] = hashlib.sha256(corrupt).hexdigest()
    s3.put_object(Bucket=dest_bucket, Key=mkey, Body=json.dumps(m).encode())
    try:
        r = run("restore", bid, env=t_env, check=False)
        assert_one_line_error(r, 5, "authentication failed at segment")
        _target_untouched(target.client())
        assert_one_line_error(run("verify", bid, "--deep", env=e, check=False), 5, "authentication failed")
    finally:
        s3.put_object(Bucket=dest_bucket, Key=mkey, Body=original)


def test_key_rotation(mender, tmp_path):
    mongo, _artifacts, _dest, env = mender
    old = result_of(run("backup", "--json", env=with_key(env, KEY_A)))["id"]
    # rotate: the new key first, the old one kept to read old backups (here from a file)
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"{KEY_B.to_base64()}\n{KEY_A.to_base64()}\n")
    keyfile.chmod(0o600)
    e = {**env, "MENDER_BACKUP_ENCRYPTION_KEY_FILE": str(keyfile)}
    r = run("key", "show", env=e)
    assert r.stdout.splitlines() == [f"{KEY_B.fingerprint}  encrypts new backups, reads",
                                     f"{KEY_A.fingerprint}  reads"]
    new = result_of(run("backup", "--json", env=e))["id"]
    assert result_of(run("verify", new, "--json", env=e))["encryption"]["key_fingerprint"] == KEY_B.fingerprint
    assert result_of(run("verify", old, "--deep", "--json", env=e))["encryption"]["key_fingerprint"] == KEY_A.fingerprint
    # once the old key is dropped, the old backup names the key it needs
    r = run("verify", old, env=with_key(env, KEY_B), check=False)
    assert_one_line_error(r, 6, f"encrypted with key {KEY_A.fingerprint}")
    r = run("backup", env={**e, "MENDER_BACKUP_ENCRYPTION_KEY": KEY_A.to_base64()}, check=False)
    assert_one_line_error(r, 2, "not both")


def test_key_generate_prints_a_usable_key():
    r = run("key", "generate")
    key = Key.from_base64(r.stdout.strip(), "stdout")
    assert len(base64.b64decode(r.stdout.strip())) == 32
    assert f"fingerprint {key.fingerprint}" in r.stderr


def test_mender_secrets_are_never_stored_in_the_clear(mender, minio):
    _mongo, _artifacts, dest_bucket, env = mender
    r = run("backup", "--mender-secrets", "default", env=env, check=False)
    assert_one_line_error(r, 2, "only stored encrypted")
    assert bucket_contents(minio.client(), dest_bucket) == {}
