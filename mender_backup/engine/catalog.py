"""The backups at a destination: listing them, and resolving an id (or `latest`)
to its manifest. A backup without its manifest is incomplete: listed as such,
never restored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..errors import NotFoundError, UsageError
from ..format.layout import BACKUPS, MANIFEST, VERIFIED, backup_key, backup_prefix, id_time
from ..format.manifest import Manifest
from ..stores import Store


@dataclass
class BackupEntry:
    id: str
    time: datetime | None
    size: int                          # bytes stored under backups/<id>/
    manifest: Manifest | None          # None: incomplete (no manifest) or unreadable
    problem: str = ""
    verified: dict | None = None       # the last test restore's verdict (verified.json)

    @property
    def passed_verification(self) -> bool:
        return self.complete and bool(self.verified) and self.verified.get("result") == "passed"

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
            "encryption": ({"algorithm": m.encryption.algorithm, "key_fingerprint": m.encryption.key_fingerprint}
                           if m and m.encryption else None),
            "mender_secrets": m.mender_secrets.secrets if m and m.mender_secrets else None,
            "verified": ({k: self.verified.get(k) for k in ("result", "verified_at", "method")}
                         if self.verified else None),
            **({"problem": self.problem} if self.problem else {}),
        }


def scan(store: Store) -> list[BackupEntry]:
    """Every backup folder at the destination, oldest first, complete or not."""
    sizes: dict[str, int] = {}
    has_manifest: set[str] = set()
    has_verdict: set[str] = set()
    for obj in store.list(BACKUPS):
        parts = obj.key[len(BACKUPS):].split("/", 1)
        if len(parts) != 2:
            continue
        bid, name = parts
        sizes[bid] = sizes.get(bid, 0) + obj.size
        if name == MANIFEST:
            has_manifest.add(bid)
        elif name == VERIFIED:
            has_verdict.add(bid)
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
        # the manifest's start time is exact; the id's is to the second (two backups in one
        # second would otherwise sort by their random suffix)
        when = _started(manifest) or id_time(bid)
        out.append(BackupEntry(bid, when, sizes[bid], manifest, problem,
                               _verdict(store, bid) if manifest and bid in has_verdict else None))
    return sorted(out, key=lambda e: (e.time is None, e.time or datetime.min, e.id))


def _verdict(store: Store, bid: str) -> dict | None:
    import json
    try:
        v = json.loads(store.get_bytes(backup_key(bid, VERIFIED)))
        return v if isinstance(v, dict) else None
    except Exception:       # an unreadable verdict is no verdict
        return None


def _started(manifest: Manifest | None) -> datetime | None:
    try:
        return datetime.fromisoformat(manifest.created_at) if manifest else None
    except ValueError:
        return None


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
    try:
        raw = store.get_bytes(backup_key(backup_id, MANIFEST))
    except NotFoundError:
        if any(True for _ in store.list(backup_prefix(backup_id))):
            raise NotFoundError(f"backup {backup_id} at {store} has no manifest: it is incomplete "
                                f"(failed or still running) and cannot be restored") from None
        raise NotFoundError(f"no backup {backup_id} at {store}") from None
    return Manifest.from_json(raw, f"backup {backup_id}")
