"""Destinations and buckets: `s3://bucket/prefix` and `file:///path` behind one
interface (base.Store). The factories here are the only place that reads a URL
and decides which store it names."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from ..errors import UsageError
from ..redact import redact_url
from .base import ObjectInfo, Store
from .file import FileStore
from .s3 import S3Store, s3_error
from .settings import S3Settings

__all__ = ["ObjectInfo", "Store", "FileStore", "S3Store", "S3Settings", "s3_error", "parse_destination",
           "open_store", "bucket_store", "split_object_url"]


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
    raise UsageError(f"unsupported destination {redact_url(url)!r}: use s3://bucket/prefix or file:///path")


def open_store(url: str, s3: S3Settings | None = None) -> Store:
    """`s3://bucket/prefix` or `file:///absolute/path` (a plain absolute path works too).
    `s3`: the destination's settings (engine Settings.destination_s3); none: the AWS chain."""
    scheme, bucket, path = parse_destination(url)
    if scheme == "file":
        return FileStore(Path(path), url if url.startswith("file:") else "file://" + url)
    return S3Store(bucket, path, s3 or S3Settings(), url)


def bucket_store(bucket: str, s3: S3Settings) -> S3Store:
    """The Mender artifact bucket (source of a backup, target of a restore; Settings.source_s3)."""
    if not bucket or "/" in bucket.strip("/"):
        raise UsageError(f"bad artifacts bucket {bucket!r}: give a bucket name")
    name = bucket.strip("/")
    return S3Store(name, "", s3, f"s3://{name}")


def split_object_url(url: str, s3: S3Settings | None = None) -> tuple[Store, str]:
    """`file:///dir/x.archive` or `s3://bucket/dir/x.archive` -> (store of its folder, object name)."""
    if url.startswith("/"):
        url = "file://" + url
    p = urlparse(url)
    parent, _, name = p.path.rstrip("/").rpartition("/")
    if not name:
        raise UsageError(f"bad object URL {redact_url(url)!r}: name a file or an S3 object")
    return open_store(f"{p.scheme}://{p.netloc}{parent or '/'}", s3), name
