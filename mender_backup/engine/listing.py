"""What `list` shows, for `mender-backup list` and `helm mender-backup list` alike: every
backup in its state (complete, incomplete, unknown) with its reason, whether it is
point-in-time consistent and up to when the shipped oplog makes it restorable, whether
the keys given can read it, and the oplog slices that could not be used.

Read-only: it needs no lock and works on a read-only destination."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EncryptionKeyError
from ..format.encryption import Keyring
from . import pitr
from .repository import Repository


@dataclass
class Listing:
    rows: list[dict]                     # one per backup, oldest first (the JSON of `list --json`)
    damaged_slices: list[str] = field(default_factory=list)   # "<name>: <problem>", for warnings

    def warnings(self) -> list[str]:
        return [f"oplog slice {d}" for d in self.damaged_slices] + \
               [f"backup {r['id']} is dated in the future: {r['problem']}" for r in self.rows if r.get("future")]


def listing(repo: Repository, keyring: Keyring) -> Listing:
    repo.check(write=False)
    cat = repo.backups()
    slices = repo.slices()
    rows = [e.as_dict() for e in cat.entries]
    pitr.annotate(rows, {e.id: e.manifest for e in cat.complete}, slices.valid)
    for r in rows:   # which backups the key(s) given can read (manifests are never encrypted)
        if r.get("encryption"):
            r["encryption"]["key_available"] = keyring.find(r["encryption"]["key_fingerprint"]) is not None
    encrypted = [r for r in rows if r.get("encryption")]
    readable = [r for r in rows if r["complete"] and (not r.get("encryption") or r["encryption"]["key_available"])]
    if encrypted and not readable:
        # none readable: no key, or the wrong one. With one key of a rotation given, or plain
        # backups beside them, the list shows which backups need another key.
        needed = sorted({r["encryption"]["key_fingerprint"] for r in encrypted})
        raise EncryptionKeyError(
            f"the backups at {repo} are encrypted with key(s) {', '.join(needed)}: "
            + ("no key given (set MENDER_BACKUP_ENCRYPTION_KEY or MENDER_BACKUP_ENCRYPTION_KEY_FILE)"
               if not keyring.keys else f"not with the key(s) given ({', '.join(keyring.fingerprints)}): wrong key"))
    return Listing(rows, [f"{d.name}: {d.problem} (not used by any restore)" for d in slices.damaged])
