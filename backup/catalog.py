"""The backups at a destination: their layout, ids, listing and the lock.

    backups/<id>/mongodb.archive<.ext>   the archive (mongodump format, compressed)
    backups/<id>/manifest.json           written last: without it the backup is incomplete
    artifacts/<key>                      shared by all backups (incremental)
    locks/mender-backup.lock             held by a running backup or prune
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Callable
from datetime import datetime, timezone

from .errors import ConflictError, NotFoundError, UsageError
from .manifest import MANIFEST, Manifest
from .store import Store

BACKUPS = "backups/"
ARTIFACTS = "artifacts/"
LOCK = "locks/mender-backup.lock"
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


@dataclass
class BackupEntry:
    id: str
    time: datetime | None
    size: int                          # bytes stored under backups/<id>/
    manifest: Manifest | None          # None: incomplete (no manifest) or unreadable
    problem: str = ""

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    def as_dict(self) -> dict:
        m = self.manifest
        return {
            "id": self.id,
            "time": self.time.isoformat() if self.time else None,
            "size": self.size + (m.artifact_bytes if m else 0),
            "archive_size": m.archive.size if m else None,
            "databases": sorted(m.databases) if m else [],
            "documents": m.document_count if m else None,
            "artifacts": len(m.artifacts) if m else None,
            "complete": self.complete,
            **({"problem": self.problem} if self.problem else {}),
        }


def scan(store: Store) -> list[BackupEntry]:
    """Every backup folder at the destination, oldest first, complete or not."""
    sizes: dict[str, int] = {}
    has_manifest: set[str] = set()
    for obj in store.list(BACKUPS):
        parts = obj.key[len(BACKUPS):].split("/", 1)
        if len(parts) != 2:
            continue
        bid, name = parts
        sizes[bid] = sizes.get(bid, 0) + obj.size
        if name == MANIFEST:
            has_manifest.add(bid)
    out = []
    for bid in sorted(sizes):
        manifest, problem = None, ""
        if bid in has_manifest:
            try:
                manifest = Manifest.from_json(store.get_bytes(backup_key(bid, MANIFEST)), f"backup {bid}")
            except Exception as exc:    # a listing must not die on one bad manifest
                problem = str(exc)
        else:
            problem = "no manifest (incomplete or still running)"
        out.append(BackupEntry(bid, id_time(bid), sizes[bid], manifest, problem))
    return out


def resolve(store: Store, backup_id: str) -> Manifest:
    """`latest` or an id -> its manifest; an incomplete backup is refused."""
    if not backup_id:
        raise UsageError("no backup id given (an id from `mender-backup list`, or `latest`)")
    if backup_id == "latest":
        complete = [e for e in scan(store) if e.complete]
        if not complete:
            raise NotFoundError(f"no complete backup at {store}")
        return complete[-1].manifest
    if "/" in backup_id or backup_id.startswith("."):
        raise UsageError(f"bad backup id {backup_id!r}")
    key = backup_key(backup_id, MANIFEST)
    try:
        raw = store.get_bytes(key)
    except NotFoundError:
        if any(o.key.startswith(f"{BACKUPS}{backup_id}/") for o in store.list(f"{BACKUPS}{backup_id}/")):
            raise NotFoundError(f"backup {backup_id} at {store} has no manifest: it is incomplete "
                                f"(failed or still running) and cannot be restored") from None
        raise NotFoundError(f"no backup {backup_id} at {store}") from None
    return Manifest.from_json(raw, f"backup {backup_id}")


# --------------------------------------------------------------------------- lock


@dataclass
class LockInfo:
    owner: str
    operation: str
    started_at: datetime
    backup_id: str = ""

    @property
    def age_seconds(self) -> float:
        return (datetime.now(timezone.utc) - self.started_at).total_seconds()


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class Lock:
    """One backup or prune at a destination at a time.

    Created with a conditional write (O_EXCL / S3 If-None-Match), so two runs
    cannot both win. A lock older than `stale_after` is reported as stale with
    its owner and age; only --break-lock removes it.
    """

    def __init__(self, store: Store, operation: str, backup_id: str = "", stale_after: float = 6 * 3600):
        self.store, self.operation, self.backup_id, self.stale_after = store, operation, backup_id, stale_after
        self.held = False

    def read(self) -> LockInfo | None:
        try:
            d = json.loads(self.store.get_bytes(LOCK))
            return LockInfo(d["owner"], d["operation"], datetime.fromisoformat(d["started_at"]),
                            d.get("backup_id", ""))
        except NotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return LockInfo("unknown (unreadable lock file)", "unknown", datetime.fromtimestamp(0, timezone.utc))

    def acquire(self, break_lock: bool = False, break_stale: bool = False,
                warn: Callable[[str], None] | None = None) -> None:
        """Take the lock. `break_lock` removes any lock first; `break_stale` only one older
        than `stale_after` (safe when runs cannot live that long, e.g. under a CronJob's
        activeDeadlineSeconds)."""
        body = json.dumps({
            "owner": f"{socket.gethostname()}:{os.getpid()}", "operation": self.operation,
            "started_at": datetime.now(timezone.utc).isoformat(), "backup_id": self.backup_id,
        }).encode()
        for _ in range(2):      # a second try, when the holder released it between our calls
            if self.store.create_exclusive(LOCK, body):
                self.held = True
                return
            info = self.read()
            if info is None:
                continue
            what = f"{info.operation} by {info.owner}, started {_age(info.age_seconds)} ago"
            stale = info.age_seconds > self.stale_after
            if break_lock or (break_stale and stale):
                if warn:
                    warn(f"breaking the {'stale ' if stale else ''}lock at {self.store} ({what})")
                self.store.delete([LOCK])
                break_lock = break_stale = False     # break once; then compete fairly
                continue
            if stale:
                raise ConflictError(f"stale lock at {self.store} ({what}); if that run is dead, "
                                    f"rerun with --break-lock")
            raise ConflictError(f"another run holds the lock at {self.store} ({what}); "
                                f"wait for it, or rerun with --break-lock if it is dead")
        raise ConflictError(f"could not take the lock at {self.store}: another run keeps taking it")

    def release(self) -> None:
        if self.held:
            self.store.delete([LOCK])
            self.held = False

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
