"""Where things live at a destination (docs/FORMAT.md, "Layout").

    backups/<id>/mongodb.archive<.ext>   the archive (mongodump format, compressed)
    backups/<id>/manifest.json           written last: without it the backup is incomplete
    backups/<id>/verified.json           the last test restore's verdict (after the manifest)
    artifacts/<key>                      shared by all backups (incremental)
    locks/mender-backup.lock             held by a running backup or prune
    oplog/<from>-<to>.bson.zst           an oplog slice (point-in-time recovery)
    oplog/<from>-<to>.json               its manifest, written last
    locks/oplog.lock                     held by a running `mender-backup oplog`
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

BACKUPS = "backups/"
ARTIFACTS = "artifacts/"
LOCK = "locks/mender-backup.lock"
OPLOG = "oplog/"
OPLOG_LOCK = "locks/oplog.lock"
MANIFEST = "manifest.json"
VERIFIED = "verified.json"
ARCHIVE = "mongodb.archive"
ID_FORMAT = "%Y%m%dT%H%M%SZ"


def new_id(now: datetime | None = None) -> str:
    """Sorts by time; the suffix keeps two backups in one second apart."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime(ID_FORMAT)}-{secrets.token_hex(3)}"


def id_time(backup_id: str) -> datetime | None:
    try:
        return datetime.strptime(backup_id.split("-", 1)[0], ID_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def backup_key(backup_id: str, name: str) -> str:
    return f"{BACKUPS}{backup_id}/{name}"


def backup_prefix(backup_id: str) -> str:
    return f"{BACKUPS}{backup_id}/"


def slice_key(name: str) -> str:
    return OPLOG + name
