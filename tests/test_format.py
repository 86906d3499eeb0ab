"""The format's schemas (mender_backup/format/schemas/, their one home; docs/FORMAT.md explains
them) validate what backups write and reject what they must not, and the readers validate
before they trust and follow docs/FORMAT.md's compatibility rule."""

from __future__ import annotations

import json
import re

import pytest

from mender_backup.errors import IntegrityError
from mender_backup.format.manifest import ENCRYPTED_FORMAT_VERSION, FORMAT_VERSION, PLAIN_FORMAT_VERSION, Manifest
from tests import manifests
from tests.cli import assert_one_line_error, result_of, run


@pytest.fixture(scope="module")
def written(tmp_path_factory, mongodb) -> dict:
    """A real manifest, written by a real backup."""
    dest = tmp_path_factory.mktemp("format-dest")
    db = "format_check"
    mongodb.client()[db].devices.insert_many([{"_id": i, "status": "accepted"} for i in range(10)])
    bid = result_of(run("backup", "--db", db, "--json",
                        env={"MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}"}))["id"]
    return {"dest": dest, "id": bid,
            "manifest": json.loads((dest / "backups" / bid / "manifest.json").read_bytes())}


def test_a_written_manifest_follows_the_schema(written):
    assert manifests.problems(written["manifest"]) == []
    # a standalone server: no oplog, so not point-in-time consistent; nothing encrypted: format 1,
    # which every reader reads
    assert written["manifest"]["format_version"] == PLAIN_FORMAT_VERSION == 1
    assert "encryption" not in written["manifest"] and "mender_secrets" not in written["manifest"]
    assert written["manifest"]["point_in_time"] == {"consistent": False, "start": None, "end": None, "oplog": None,
                                                    "databases": None,
                                                    "reason": "the server has no oplog (a standalone server, not "
                                                              "a replica set member)"}
    assert manifests.audit_tree(written["dest"]) == 1


@pytest.mark.parametrize("breakage", [
    lambda m: m.pop("archive"),
    lambda m: m["archive"].update(sha256="not-a-digest"),
    lambda m: m["archive"].update(compression="lz4"),
    lambda m: m.update(id="../../etc"),
    lambda m: m["databases"]["format_check"]["devices"].update(count=-1),
    lambda m: m["databases"]["format_check"]["devices"].update(digest="XYZ"),
    lambda m: m.update(format_version=3),            # format 3 is for a consistent backup only
    lambda m: m.update(format_version=4),            # format 4 is for a backup with tenant stores only
    lambda m: m.update(tenant_stores={"t1": {"type": "s3", "bucket": "own"}}),    # ... which is format 4
    lambda m: m.update(format_version=4, tenant_stores={"t1": {"type": "gcs", "bucket": "own"}}),
    lambda m: m["point_in_time"].update(consistent=True),   # ... which is format 3
    lambda m: m["point_in_time"].update(end={"t": 1, "i": 2}),
])
def test_the_schema_rejects_a_broken_manifest(written, breakage):
    m = json.loads(json.dumps(written["manifest"]))
    breakage(m)
    assert manifests.problems(m)


def test_readers_ignore_fields_they_do_not_know(written):
    m = json.loads(json.dumps(written["manifest"]))
    m["added_later"] = {"x": 1}
    m["archive"]["encryption"] = None
    m["databases"]["format_check"]["devices"]["new_field"] = 3
    parsed = Manifest.from_json(json.dumps(m).encode(), "test")
    assert parsed.document_count == 10 and parsed.archive.sha256 == written["manifest"]["archive"]["sha256"]


def test_an_artifact_of_a_tenant_store_the_manifest_does_not_list_is_refused(written):
    m = json.loads(json.dumps(written["manifest"]))
    m.update(format_version=4, tenant_stores={"t1": {"type": "s3", "bucket": "own"}},
             artifacts=[{"key": "t1/a", "size": 1, "tenant_store": "t1"}, {"key": "t2/b", "size": 1, "tenant_store": "t2"}])
    assert not manifests.problems(m)          # the schema cannot say it: the reader does
    with pytest.raises(IntegrityError, match="artifact t2/b names a tenant store the manifest does not list"):
        Manifest.from_json(json.dumps(m).encode(), "test")


def test_a_newer_manifest_format_is_refused_in_one_line(written, tmp_path):
    import shutil
    shutil.copytree(written["dest"], tmp_path / "d")
    path = tmp_path / "d" / "backups" / written["id"] / "manifest.json"
    m = json.loads(path.read_bytes())
    m["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(m))
    try:
        with pytest.raises(IntegrityError, match="newer mender-backup"):
            Manifest.from_json(path.read_bytes(), "test")
        r = run("verify", written["id"], env={"MENDER_BACKUP_DESTINATION": f"file://{tmp_path / 'd'}"},
                check=False)
        assert_one_line_error(r, 5, "written by a newer mender-backup", "upgrade")
    finally:
        path.unlink()      # not one of ours: the session's manifest audit must not see it


def test_format_md_names_every_manifest_field():
    """The schema lists every field the writer writes (and nothing it does not)."""
    from dataclasses import fields
    from mender_backup.format.manifest import ArchiveEntry, ArtifactEntry, CollectionEntry
    s = manifests.schema()
    assert set(s["properties"]) == {f.name for f in fields(Manifest)}
    assert set(s["properties"]["archive"]["properties"]) == {f.name for f in fields(ArchiveEntry)}
    assert set(s["properties"]["artifacts"]["items"]["properties"]) == {f.name for f in fields(ArtifactEntry)}
    coll = s["properties"]["databases"]["additionalProperties"]["additionalProperties"]["properties"]
    assert set(coll) == {f.name for f in fields(CollectionEntry)}
    from mender_backup.format.manifest import EncryptionEntry, SecretsEntry
    assert set(s["properties"]["encryption"]["properties"]) == {f.name for f in fields(EncryptionEntry)}
    assert set(s["properties"]["mender_secrets"]["properties"]) == {f.name for f in fields(SecretsEntry)}


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory, mongodb, written) -> dict:
    """A real manifest of an encrypted backup (format 2)."""
    from mender_backup.format.encryption import Key
    dest = tmp_path_factory.mktemp("format-enc")
    env = {"MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}",
           "MENDER_BACKUP_ENCRYPTION_KEY": Key(b"k" * 32).to_base64()}
    bid = result_of(run("backup", "--db", "format_check", "--json", env=env))["id"]
    return json.loads((dest / "backups" / bid / "manifest.json").read_bytes())


def test_an_encrypted_manifest_is_format_2_and_follows_the_schema(encrypted):
    assert manifests.problems(encrypted) == []
    assert encrypted["format_version"] == ENCRYPTED_FORMAT_VERSION == 2     # from a standalone server: no oplog
    assert encrypted["archive"]["key"].endswith(".enc")
    assert Manifest.from_json(json.dumps(encrypted).encode(), "t").encryption.key_fingerprint == \
        encrypted["encryption"]["key_fingerprint"]


@pytest.mark.parametrize("breakage", [
    lambda m: m.update(format_version=1),                               # an old reader would misread it
    lambda m: m["archive"].update(key="mongodb.archive.zst"),
    lambda m: m["encryption"].update(key_fingerprint="the key itself"),
    lambda m: m["encryption"].update(algorithm="rot13"),
    lambda m: m.pop("encryption"),
])
def test_the_schema_rejects_a_broken_encrypted_manifest(encrypted, breakage):
    m = json.loads(json.dumps(encrypted))
    breakage(m)
    assert manifests.problems(m)


def test_a_reader_refuses_encryption_in_a_format_1_manifest(encrypted):
    m = dict(encrypted, format_version=1)
    with pytest.raises(IntegrityError, match="encrypted parts in format_version 1"):
        Manifest.from_json(json.dumps(m).encode(), "t")


def test_format_md_points_at_the_schemas_the_wheel_ships():
    import tomllib
    from mender_backup.format import schema
    text = manifests.ROOT.joinpath("docs", "FORMAT.md").read_text()
    data = tomllib.loads(manifests.ROOT.joinpath("pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert data["mender_backup.format"] == ["schemas/*.schema.json"]
    for name in ("manifest", "slice"):
        assert f"mender_backup/format/schemas/{name}.schema.json" in text
        assert schema.load(name)["$id"] == f"https://mender-backup/{name}.schema.json"
    assert "```json\n{\n  \"$schema\"" not in text        # no second copy to drift


def test_a_reader_refuses_a_manifest_that_breaks_the_schema_in_one_line(written):
    from mender_backup.errors import InvalidManifestError
    for breakage, field in [
        (lambda m: m["databases"]["format_check"]["devices"].update(count=-1), "databases/format_check/devices/count"),
        (lambda m: m["databases"]["format_check"]["devices"].update(count="10"), "databases/format_check/devices/count"),
        (lambda m: m.update(artifacts=[{"key": "../../etc/passwd", "size": 1}]), "artifacts/0/key"),
        (lambda m: m.update(artifacts=[{"key": "/etc/passwd", "size": 1}]), "artifacts/0/key"),
        (lambda m: m.update(artifacts=[{"key": "a\x00b", "size": 1}]), "artifacts/0/key"),
        (lambda m: m.update(artifacts=[{"key": "a\\b", "size": 1}]), "artifacts/0/key"),
        (lambda m: m.update(created_at="2026-11-24T03:15:00"), "created_at"),
        (lambda m: m["archive"].update(size=-5), "archive/size"),
    ]:
        m = json.loads(json.dumps(written["manifest"]))
        breakage(m)
        with pytest.raises(InvalidManifestError) as caught:
            Manifest.from_json(json.dumps(m).encode(), "backup x")
        assert caught.value.exit_code == 5 and "\n" not in str(caught.value)
        assert str(caught.value).startswith(f"backup x: invalid manifest: {field}: "), str(caught.value)


@pytest.mark.parametrize("metadata,said", [
    ('{"options": {}, "indexes": [{"v": 2, "key": {"status": 1}, "naMe": "status_1"}]}', "without a name or a key"),
    ('{"options": {}, "indexes": [{"v": 2, "key": {"a": 1}, "name": "a_1", "uniqUe": true}]}',
     "index 'a_1' has the unknown field 'uniqUe'"),
    ('{"options": {"cappEd": true}, "indexes": []}', "unknown collection option 'cappEd'"),
    ('{"options": {}, "indexes": [{"v": 2, "key": {}, "name": "x"}]}', "without a name or a key"),
])
def test_damaged_collection_metadata_is_refused_before_any_write(metadata, said):
    """A bit flipped in an archive whose sha256 was forged (test_fuzz found "naMe"): MongoDB
    would refuse the spec, but only after earlier collections went in."""
    from mender_backup.format.metadata import CollectionSpec
    with pytest.raises(IntegrityError, match=f"malformed metadata for d.c in the archive: .*{re.escape(said)}"):
        CollectionSpec.from_json("d", "c", metadata)
    good = ('{"options": {"validator": {"a": {"$type": "int"}}}, "indexes": [{"v": 2, "key": {"a": 1}, '
            '"name": "a_1", "unique": true, "partialFilterExpression": {"a": {"$gt": 0}}}]}')
    assert CollectionSpec.from_json("d", "c", good).indexes[0]["name"] == "a_1"
