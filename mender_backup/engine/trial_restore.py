"""`mender-backup verify --restore-into URL`: the scheduled test restore.

Restores a backup into a scratch MongoDB under databases named
`mbv_<6 hex>_<name>` (a prefix no one else uses, checked free first), lets the
restore verify every count, content digest and index against the manifest,
optionally copies every artifact into a scratch bucket under the same prefix and
checks it, then drops exactly the databases and objects it made, pass or fail.

The verdict is recorded next to the backup (backups/<id>/verified.json, docs/FORMAT.md),
so `list` shows it and retention never deletes the newest backup that passed. Only
verdicts about the backup are recorded (passed, or failed its integrity checks): a
scratch server that cannot be reached says nothing about the backup.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .. import __version__
from ..errors import ConflictError, IntegrityError, MenderBackupError, UsageError
from ..format.encryption import Keyring
from ..format.layout import ARTIFACTS
from ..mongo import client as mongo_client
from ..output import Reporter
from ..stores import bucket_store, open_store
from .settings import Settings
from . import artifacts, catalog, integrity, restore
from .repository import Repository

PREFIX = "mbv_"
MAX_DB_NAME = 63


@dataclass
class TrialRestoreResult:
    """A test restore that passed: what was restored into which scratch prefix, and whether the
    verdict could be recorded at the destination."""
    id: str
    scratch_prefix: str
    documents: int
    collections: int
    artifacts_checked: int | None
    recorded: bool
    metrics_pushed: bool | None = None  # set by the caller once the run's metrics are out

    @classmethod
    def passed(cls, verdict: dict) -> "TrialRestoreResult":
        return cls(verdict["id"], verdict["scratch_prefix"], verdict["documents"], verdict["collections"],
                   verdict.get("artifacts_checked"), verdict["recorded"])

    def to_json(self) -> dict:
        return {"id": self.id, "method": "restore", "scratch_prefix": self.scratch_prefix, "result": "passed",
                "documents": self.documents, "collections": self.collections,
                **({"artifacts_checked": self.artifacts_checked} if self.artifacts_checked is not None else {}),
                "recorded": self.recorded, "metrics_pushed": self.metrics_pushed}

    def describe(self) -> str:
        return (f"test restore of backup {self.id} passed: {self.documents} documents in {self.collections} "
                f"collections restored into {self.scratch_prefix}*, verified against the manifest"
                + (f", {self.artifacts_checked} artifacts copied and checked"
                   if self.artifacts_checked is not None else "")
                + "; scratch databases dropped" + ("; verdict recorded" if self.recorded else ""))


def run(destination: str, backup_id: str, scratch_url: str, reporter: Reporter, keyring: Keyring | None = None,
        scratch_bucket: str | None = None, settings: Settings = Settings()) -> TrialRestoreResult:
    store = open_store(destination, settings.destination_store)
    manifest = catalog.resolve(store, backup_id)
    integrity.require_key(manifest, keyring)
    client = mongo_client.connect(scratch_url)
    bucket = bucket_store(scratch_bucket, settings.source_store) if scratch_bucket else None
    if bucket:
        bucket.check()
    prefix = f"{PREFIX}{secrets.token_hex(3)}_"
    ours = sorted(prefix + db for db in manifest.databases)
    too_long = [n for n in ours if len(n.encode()) > MAX_DB_NAME]
    if too_long:
        raise UsageError(f"test restore: database name {too_long[0]} would be too long for MongoDB")
    taken = sorted(set(ours) & set(client.list_database_names()))
    if taken:
        raise ConflictError(f"test restore: scratch database(s) {', '.join(taken)} already exist")

    started = time.time()
    reporter.info(f"test restore of backup {manifest.id} into scratch databases {prefix}* "
                  + (f"and {bucket}/{prefix}" if bucket else ""), prefix=prefix)
    result = {"id": manifest.id, "method": "restore", "scratch_prefix": prefix, "result": "failed"}
    try:
        summary = restore.run(restore.RestoreOptions(
            mongodb_url=scratch_url, backup_id=manifest.id, source=destination, keyring=keyring,
            db_prefix=prefix, skip_artifacts=True, settings=settings), reporter)
        result["documents"] = sum(c["documents"] for c in summary["create"])
        result["collections"] = sum(1 for c in summary["create"] if c["type"] != "view")
        if bucket:
            result["artifacts_checked"] = _artifacts(store, bucket, prefix, manifest, reporter)
        result["result"] = "passed"
    except IntegrityError as exc:
        result["error"] = str(exc)
        _record(store, manifest.id, result, started, reporter)
        raise
    finally:
        _clean(client, ours, bucket, prefix, reporter)
    _record(store, manifest.id, result, started, reporter)
    return TrialRestoreResult.passed(result)


def _artifacts(store, bucket, prefix: str, manifest, reporter: Reporter) -> int:
    """Every artifact read in full into the scratch bucket, then its size checked."""
    wanted = {a.key: a for a in manifest.artifacts}
    objs = [o for k, o in artifacts.inventory(store, ARTIFACTS).items() if k in wanted]
    artifacts.copy(store, ARTIFACTS, bucket, prefix, objs, reporter, "test-restoring artifacts")
    bad = artifacts.check_complete(manifest.artifacts, artifacts.inventory(bucket, prefix))
    if bad:
        raise IntegrityError(f"test restore: {len(bad)} artifact(s) missing or of the wrong size (e.g. {bad[0]})")
    return len(manifest.artifacts)


def _clean(client, databases: list[str], bucket, prefix: str, reporter: Reporter) -> None:
    """Drop exactly what this run made; a failure here is a warning (the verdict stands)."""
    try:
        present = set(client.list_database_names())
        for db in databases:
            if db in present:
                client.drop_database(db)
        if bucket:
            bucket.delete([o.key for o in bucket.list(prefix)])
        reporter.info(f"test restore: dropped {len([d for d in databases if d in present])} scratch database(s)"
                      + (f" and the objects under {bucket}/{prefix}" if bucket else ""))
    except Exception as exc:
        reporter.warn(f"test restore: could not remove everything it made under {prefix}* ({type(exc).__name__}): "
                      f"remove it by hand")


def _record(store, backup_id: str, result: dict, started: float, reporter: Reporter) -> None:
    doc = {**result, "verified_at": datetime.now(timezone.utc).isoformat(),
           "duration_seconds": round(time.time() - started, 3), "tool_version": __version__}
    try:
        Repository(store).commit_verdict(backup_id, (json.dumps(doc, indent=2) + "\n").encode())
        result["recorded"] = True
    except MenderBackupError as exc:     # a read-only destination: the verdict is still printed
        reporter.warn(f"verdict not recorded at the destination: {exc}")
        result["recorded"] = False
