"""Destinations and artifact stores: `s3://bucket/prefix`, `azure://account/container/prefix`
and `file:///path` behind one interface (base.Store). The factories here are the only place that reads a URL
and decides which store it names."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ..errors import UsageError
from ..redact import redact_url
from .base import ObjectInfo, Store
from .file import FileStore
from .azure import AzureStore
from .s3 import S3Store, s3_error
from .settings import AzureSettings, S3Settings, StoreAccess

__all__ = ["ObjectInfo", "Store", "FileStore", "S3Store", "AzureStore", "S3Settings", "AzureSettings",
           "StoreAccess", "s3_error", "parse_destination", "open_store", "bucket_store", "split_object_url"]
USE = "use s3://bucket/prefix, azure://account/container/prefix or file:///path"


def parse_destination(url: str) -> tuple[str, str, str]:
    """Check a destination's syntax, offline: -> (scheme, bucket or "", path or prefix)."""
    if not url:
        raise UsageError("no destination given (--destination or MENDER_BACKUP_DESTINATION)")
    if url.startswith("/"):
        url = "file://" + url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise UsageError(f"bad file URL {redact_url(url)!r}: use file:///absolute/path")
        return "file", "", parsed.path
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise UsageError(f"bad S3 URL {redact_url(url)!r}: use s3://bucket/prefix")
        return "s3", parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme == "azure":
        account, _, rest = (parsed.netloc + parsed.path).partition("/")
        container, _, prefix = rest.partition("/")
        if not account or not container:
            raise UsageError(f"bad Azure URL {redact_url(url)!r}: use azure://account/container/prefix")
        return "azure", f"{account}/{container}", prefix
    raise UsageError(f"unsupported destination {redact_url(url)!r}: {USE}")


def open_store(url: str, access: StoreAccess) -> Store:
    """`s3://bucket/prefix`, `azure://account/container/prefix` or `file:///absolute/path` (a
    plain absolute path works too). `access`: the destination's credentials (engine
    Settings.destination_store), required so that no caller skips MENDER_BACKUP_DEST_*
    unseen; StoreAccess() is the AWS chain and DefaultAzureCredential."""
    scheme, bucket, path = parse_destination(url)
    if scheme == "file":
        return FileStore(Path(path), url if url.startswith("file:") else "file://" + url)
    if scheme == "azure":
        account, container = bucket.split("/")
        return AzureStore(account, container, path, access.azure, url)
    return S3Store(bucket, path, access.s3, url)


def bucket_store(bucket: str, access: StoreAccess) -> Store:
    """Mender's artifact store (source of a backup, target of a restore; Settings.source_store):
    an S3 bucket's name, or `azure://account/container` for Azure Blob Storage."""
    if bucket.startswith("azure://"):
        store = open_store(bucket.rstrip("/"), access)
        if store.prefix:
            raise UsageError(f"bad artifacts container {bucket!r}: give azure://account/container")
        return store
    if not bucket or "/" in bucket.strip("/"):
        raise UsageError(f"bad artifacts bucket {bucket!r}: give a bucket name or azure://account/container")
    name = bucket.strip("/")
    return S3Store(name, "", access.s3, f"s3://{name}")


def split_object_url(url: str, access: StoreAccess) -> tuple[Store, str]:
    """`file:///dir/x.archive`, `s3://bucket/dir/x.archive`, `azure://account/container/x.archive`
    -> (store of its folder, object name)."""
    if url.startswith("/"):
        url = "file://" + url
    p = urlparse(url)
    parent, _, name = p.path.rstrip("/").rpartition("/")
    if not name:
        raise UsageError(f"bad object URL {redact_url(url)!r}: name a file or an S3 object")
    return open_store(f"{p.scheme}://{p.netloc}{parent or '/'}", access), name
