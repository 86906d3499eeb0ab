"""engine/settings.py: the environment read once into Settings, without servers."""

from __future__ import annotations

import pytest

from mender_backup.engine.settings import Settings
from mender_backup.errors import UsageError
from mender_backup.stores.settings import DEFAULT_PART_SIZE, MIN_PART_SIZE


def test_nothing_configured_is_the_aws_chain_and_no_limits():
    s = Settings.from_env({})
    assert s.source_store.s3.endpoint_url is None and s.source_store.s3.access_key is None
    assert s.destination_store == s.source_store
    assert (s.tmp_limit, s.state_dir, dict(s.mender_release)) == (None, None, {})
    assert s.source_store.s3.part_size == DEFAULT_PART_SIZE


def test_the_destination_overrides_the_source_per_field():
    s = Settings.from_env({"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ACCESS_KEY_ID": "src",
                           "AWS_SECRET_ACCESS_KEY": "src-secret", "MENDER_BACKUP_DEST_AWS_ACCESS_KEY_ID": "dst",
                           "MENDER_BACKUP_DEST_AWS_SECRET_ACCESS_KEY": "dst-secret"})
    assert (s.source_store.s3.access_key, s.destination_store.s3.access_key) == ("src", "dst")
    assert s.destination_store.s3.endpoint_url == "http://minio:9000"       # not overridden: the source's
    assert s.source_store.s3.addressing_style == "path"                    # an endpoint: MinIO-style paths
    assert not s.source_store.s3.same_service(s.destination_store.s3)


def test_secrets_stay_out_of_repr():
    s = Settings.from_env({"AWS_SECRET_ACCESS_KEY": "very-secret-value", "MENDER_BACKUP_ENCRYPTION_KEY": "k3y"})
    assert "very-secret-value" not in repr(s) and "k3y" not in repr(s)


def test_read_once_later_changes_are_not_seen():
    env = {"MENDER_BACKUP_STATE_DIR": "/state"}
    s = Settings.from_env(env)
    env["MENDER_BACKUP_STATE_DIR"] = "/elsewhere"
    assert s.state_dir == "/state" and s.environ["MENDER_BACKUP_STATE_DIR"] == "/state"


def test_the_release_and_the_tmp_limit():
    s = Settings.from_env({"MENDER_BACKUP_MENDER_CHART": "mender", "MENDER_BACKUP_MENDER_APP_VERSION": "v4.1.3",
                           "MENDER_BACKUP_TMP_LIMIT": "512Mi"})
    assert dict(s.mender_release) == {"chart": "mender", "app_version": "v4.1.3"}
    assert s.tmp_limit == 512 << 20
    assert Settings.from_env({"MENDER_BACKUP_TMP_LIMIT": "lots"}).tmp_limit is None     # unreadable: statvfs only


def test_part_size_has_a_floor_and_a_bad_one_is_a_usage_error():
    assert Settings.from_env({"MENDER_BACKUP_S3_PART_SIZE": "1"}).source_store.s3.part_size == MIN_PART_SIZE
    with pytest.raises(UsageError, match="MENDER_BACKUP_S3_PART_SIZE"):
        Settings.from_env({"MENDER_BACKUP_S3_PART_SIZE": "big"})


def test_a_destination_with_azure_credentials_of_its_own_inherits_none_of_the_sources():
    s = Settings.from_env({"AZURE_STORAGE_CONNECTION_STRING": "AccountName=mender;AccountKey=c3JjLWtleQ==",
                           "AZURE_STORAGE_BLOB_ENDPOINT": "http://azurite:10000/mender",
                           "MENDER_BACKUP_DEST_AZURE_STORAGE_KEY": "ZGVzdC1rZXk="})
    src, dst = s.source_store.azure, s.destination_store.azure
    assert (src.connection_string, src.account_key) == ("AccountName=mender;AccountKey=c3JjLWtleQ==", None)
    assert (dst.connection_string, dst.account_key) == (None, "ZGVzdC1rZXk=")
    assert dst.blob_endpoint == "http://azurite:10000/mender"        # not a credential: inherited
    same = Settings.from_env({"AZURE_STORAGE_KEY": "c3JjLWtleQ=="}).destination_store.azure
    assert same.account_key == "c3JjLWtleQ==" and same.shared_key      # nothing of its own: the source's
