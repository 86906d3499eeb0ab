"""The manifest's JSON Schema, as the package ships it (mender_backup/format/schemas/, its
one home), and the audit that validates every manifest the tests' backups wrote, wherever
they wrote it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from mender_backup.format import schema as format_schema

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "manifest.json"


def schema(block: str = "manifest") -> dict:
    s = format_schema.load(block)
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def problems(manifest: dict, block: str = "manifest") -> list[str]:
    """The package's own validation (its date-time check refuses a time without a zone)."""
    return format_schema.problems(manifest, block)


def check(raw: bytes, where: str, block: str = "manifest") -> None:
    found = problems(json.loads(raw), block)
    assert not found, f"{where} does not follow its schema (mender_backup/format/schemas/): {found}"


def _is_slice_manifest(parts: list[str]) -> bool:
    """oplog/<from>-<to>.json (MinIO keeps objects in folders named like keys: `xl.meta` inside)."""
    return len(parts) >= 2 and parts[-2] == "oplog" and re.fullmatch(r"\d+\.\d+-\d+\.\d+\.json", parts[-1]) is not None


# A destination whose root holds this file has manifests a test damaged on purpose (the
# catalog's unknown state, the fuzz test): the audit passes over it.
HAND_MADE = ".hand-made-manifests"


def mark_hand_made(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / HAND_MADE).write_text("manifests here are damaged on purpose by a test\n")


def mark_hand_made_s3(s3, bucket: str, prefix: str) -> None:
    """The same for an S3 destination: s3://bucket/prefix."""
    s3.put_object(Bucket=bucket, Key=f"{prefix.strip('/')}/{HAND_MADE}".lstrip("/"), Body=b"damaged on purpose\n")


def _hand_made(path: Path) -> bool:
    return any((p / HAND_MADE).exists() for p in path.parents)


def audit_tree(root: Path) -> int:
    """Validate every backups/<id>/manifest.json and oplog slice manifest under a folder;
    returns how many."""
    n = 0
    for path in root.rglob(MANIFEST):
        if path.is_file() and path.parent.parent.name == "backups" and not _hand_made(path):
            check(path.read_bytes(), str(path))     # (MinIO's data folders hold dirs so named)
            n += 1
    for path in root.rglob("*.json"):
        if path.is_file() and _is_slice_manifest(list(path.parts)) and not _hand_made(path):
            check(path.read_bytes(), str(path), "slice")
            n += 1
    return n


def audit_minio(minio) -> int:
    """Validate every manifest in every bucket of a running MinIO; returns how many."""
    s3, n = minio.client(), 0
    for b in s3.list_buckets().get("Buckets", []):
        objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b["Name"])
                   for o in page.get("Contents", [])]
        hand_made = tuple(o["Key"][:-len(HAND_MADE)] for o in objects if o["Key"].endswith(HAND_MADE))
        for o in objects:
            if hand_made and o["Key"].startswith(hand_made):
                continue
            parts = o["Key"].split("/")
            if parts[-1] == MANIFEST and len(parts) >= 3 and parts[-3] == "backups":
                check(s3.get_object(Bucket=b["Name"], Key=o["Key"])["Body"].read(), f"s3://{b['Name']}/{o['Key']}")
                n += 1
            elif _is_slice_manifest(parts):
                check(s3.get_object(Bucket=b["Name"], Key=o["Key"])["Body"].read(), f"s3://{b['Name']}/{o['Key']}",
                      "slice")
                n += 1
    return n
