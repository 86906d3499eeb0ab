"""The backups at a destination, each in one of three states (docs/FORMAT.md, "States"):

- complete: its manifest was read and is valid;
- incomplete: it provably has no manifest (a failed or killed run; or one still running);
- unknown: anything else: a manifest that could not be read (a transient error, access
  denied), is invalid, or is of a newer format; a folder that is not a backup id.

Unknown is never deleted and never counted by retention; a read error is kept apart
from a damaged manifest, because prune must refuse to decide on a catalog read that had
one (restic#4612: a problem while listing snapshots once let prune wipe a repository).

Order: by the time in the backup's id (written once, by the run that made it, and the
name of its folder: no manifest edit moves it), to the second, then the manifest's start
time within that second. A backup dated after now (a clock that was wrong once) is
flagged `future`: listed, kept, but not counted by retention nor taken as `latest`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..errors import IntegrityError, MenderBackupError, NotFoundError, UsageError
from ..format.layout import BACKUPS, MANIFEST, VERIFIED, backup_key, backup_prefix, id_time
from ..format.manifest import Manifest
from ..stores import Store

COMPLETE, INCOMPLETE, UNKNOWN = "complete", "incomplete", "unknown"
# clocks of two machines differ by this much without either being wrong
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class BackupEntry:
    id: str
    time: datetime | None              # the id's time; None: the folder is not a backup id
    size: int                          # bytes stored under backups/<id>/
    manifest: Manifest | None          # set exactly when complete
    state: str = INCOMPLETE
    problem: str = ""                  # why unknown or incomplete, or what is odd (future)
    read_error: bool = False           # unknown because reading failed, not because of content
    future: bool = False               # dated after now: a clock was wrong when it was made
    verified: dict | None = None       # the last test restore's verdict (verified.json)
    verdict_unreadable: bool = False   # verified.json exists but could not be read: kept, in doubt

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    @property
    def passed_verification(self) -> bool:
        return self.complete and bool(self.verified) and self.verified.get("result") == "passed"

    @property
    def sort_key(self) -> tuple:
        started = self.manifest.created_at if self.manifest else ""
        return (self.time is None, self.time or datetime.min.replace(tzinfo=timezone.utc), started, self.id)

    def as_dict(self) -> dict:
        m = self.manifest
        return {
            "id": self.id,
            "time": self.time.isoformat() if self.time else None,
            "state": self.state,
            "size": self.size + (m.artifact_bytes if m else 0),
            "archive_size": m.archive.size if m else None,
            "databases": sorted(m.databases) if m else [],
            "documents": m.document_count if m else None,
            "artifacts": len(m.artifacts) if m else None,
            "complete": self.complete,
            "future": self.future,
            "encryption": ({"algorithm": m.encryption.algorithm, "key_fingerprint": m.encryption.key_fingerprint}
                           if m and m.encryption else None),
            "mender_secrets": m.mender_secrets.secrets if m and m.mender_secrets else None,
            "guards": _guards(m),
            "verified": ({k: self.verified.get(k) for k in ("result", "verified_at", "method")}
                         if self.verified else None),
            **({"problem": self.problem} if self.problem else {}),
        }


def _guards(m) -> dict | None:
    """The upgrade a backup guards (taken by `helm mender-backup upgrade`), or None."""
    mender = m.mender if m else {}
    if not mender.get("upgrade"):
        return None
    return {k: mender.get(k) for k in ("upgrade", "release", "revision", "chart_version", "app_version",
                                        "upgrade_to")}


@dataclass
class Catalog:
    """Every backup folder at a destination, oldest first."""
    entries: list[BackupEntry] = field(default_factory=list)

    @property
    def complete(self) -> list[BackupEntry]:
        return [e for e in self.entries if e.complete]

    @property
    def unknown(self) -> list[BackupEntry]:
        return [e for e in self.entries if e.state == UNKNOWN]

    @property
    def read_errors(self) -> list[BackupEntry]:
        return [e for e in self.entries if e.read_error]

    def latest(self) -> BackupEntry | None:
        """The newest complete backup not dated in the future (if every one is: the newest)."""
        done = self.complete
        present = [e for e in done if not e.future]
        return (present or done or [None])[-1]


def scan(store: Store, now: datetime | None = None) -> Catalog:
    """Read every backup folder. Listing errors propagate (nothing can be decided without
    the list); a manifest's read error or damage makes that one backup unknown."""
    now = now or datetime.now(timezone.utc)
    sizes: dict[str, int] = {}
    names: dict[str, set[str]] = {}
    for obj in store.list(BACKUPS):
        bid, _, name = obj.key[len(BACKUPS):].partition("/")
        sizes[bid] = sizes.get(bid, 0) + obj.size
        names.setdefault(bid, set()).add(name)
    entries = [_entry(store, bid, sizes[bid], names[bid], now) for bid in sizes]
    return Catalog(sorted(entries, key=lambda e: e.sort_key))


def _entry(store: Store, bid: str, size: int, names: set[str], now: datetime) -> BackupEntry:
    e = BackupEntry(bid, id_time(bid), size, None)
    if e.time is None:
        e.state, e.problem = UNKNOWN, "not a backup id (a folder mender-backup did not make): kept"
        return e
    e.future = e.time > now + CLOCK_SKEW
    if MANIFEST not in names:
        e.problem = ("no manifest (a failed run, or one still running)" if not any(
            n.startswith(MANIFEST + "/") for n in names) else "a folder named manifest.json: kept")
        e.state = INCOMPLETE if e.problem.startswith("no manifest") else UNKNOWN
        return e
    try:
        raw = store.get_bytes(backup_key(bid, MANIFEST))
    except NotFoundError:           # deleted between the list and the read (a prune)
        e.problem = "no manifest (deleted while listed)"
        return e
    except Exception as exc:        # transient or access: the backup may well be complete
        e.state, e.read_error = UNKNOWN, True
        e.problem = f"its manifest could not be read ({one_line(exc)}): kept"
        return e
    try:
        manifest = Manifest.from_json(raw, f"backup {bid}")
        if manifest.id != bid:
            raise ValueError(f"its manifest names backup {manifest.id!r}")
    except Exception as exc:        # damaged, invalid or newer: kept, never trusted
        e.state, e.problem = UNKNOWN, f"{one_line(exc)}: kept"
        return e
    e.state, e.manifest = COMPLETE, manifest
    if e.future:
        e.problem = (f"dated {e.time.isoformat()}, after now ({now.isoformat(timespec='seconds')}): a wrong "
                     f"clock; kept, not counted by retention nor taken as latest")
    if VERIFIED in names:
        e.verified, e.verdict_unreadable = _verdict(store, bid)
    return e


def _verdict(store: Store, bid: str) -> tuple[dict | None, bool]:
    try:
        v = json.loads(store.get_bytes(backup_key(bid, VERIFIED)))
        return (v, False) if isinstance(v, dict) else (None, True)
    except NotFoundError:
        return None, False
    except Exception:
        return None, True


def one_line(exc: Exception) -> str:
    """An error's text on one line, as `list` and prune show a backup's or a slice's problem."""
    return " ".join(str(exc).split()) or type(exc).__name__


def resolve(store: Store, backup_id: str) -> Manifest:
    """`latest` or an id -> its manifest; an incomplete or unknown backup is refused."""
    if not backup_id:
        raise UsageError("no backup id given (an id from `mender-backup list`, or `latest`)")
    if backup_id == "latest":
        cat = scan(store)
        best = cat.latest()
        doubt = [e for e in cat.read_errors if best is None or e.sort_key > best.sort_key]
        if doubt:   # a newer backup may exist: `latest` cannot be decided
            raise _unreadable(store, doubt[0])
        if best is None:
            raise NotFoundError(f"no complete backup at {store}")
        return best.manifest
    if "/" in backup_id or backup_id.startswith(".") or "\0" in backup_id:
        raise UsageError(f"bad backup id {backup_id!r}")
    try:
        raw = store.get_bytes(backup_key(backup_id, MANIFEST))
    except NotFoundError:
        if any(True for _ in store.list(backup_prefix(backup_id))):
            raise NotFoundError(f"backup {backup_id} at {store} has no manifest: it is incomplete "
                                f"(failed or still running) and cannot be restored") from None
        raise NotFoundError(f"no backup {backup_id} at {store}") from None
    manifest = Manifest.from_json(raw, f"backup {backup_id}")
    if manifest.id != backup_id:
        raise IntegrityError(f"backup {backup_id}: its manifest names backup {manifest.id!r}")
    return manifest


def _unreadable(store: Store, e: BackupEntry) -> Exception:
    return MenderBackupError(f"cannot tell which backup at {store} is the latest: backup {e.id}'s {e.problem}")
