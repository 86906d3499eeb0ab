"""Checks a front end makes before it changes anything, without reaching into the stores or
mongo packages itself (tests/test_layers.py): a destination's syntax, an artifact bucket's
reachability, a MongoDB's."""

from __future__ import annotations

from ..format.manifest import Manifest
from ..mongo import client as mongo_client
from ..stores import bucket_store, parse_destination
from .settings import Settings

__all__ = ["Manifest", "check_destination", "check_bucket", "connect_mongodb"]


def check_destination(url: str) -> None:
    """The destination URL's syntax, offline (UsageError if it is not s3://…, azure://… or file://…)."""
    parse_destination(url)


def check_bucket(bucket: str, settings: Settings) -> None:
    """The artifact store (a bucket, or azure://account/container) is reachable with the source's settings."""
    bucket_store(bucket, settings.source_store).check()


def connect_mongodb(url: str):
    """A client of the MongoDB at `url`, its reachability checked (UnreachableError)."""
    return mongo_client.connect(url)
