"""A destination and its one owner (restic's `internal/repository` is the model).

Commands talk to a Repository, not to the store. It owns:
- the layout (format/layout.py) and the two locks: the backups' (backup, prune) and the
  oplog shipper's, each covering its own key prefixes, and so exactly which leftovers of a
  killed run the holder may remove (backups/ and artifacts/, or oplog/: never the other
  run's live upload, never another destination's in the same bucket);
- the two catalogs: backups (engine/catalog.py, three states) and oplog slices
  (engine/pitr.py);
- the commit protocol: data written, then synced, then the lock checked still held,
  then the manifest written durably; the same for slice manifests and verdicts;
- the deletion protocol: a backup loses its manifest first (an interrupted prune leaves
  an incomplete backup, never one that claims to be complete and is not); an incomplete
  backup is deleted only once its manifest is proven absent; every deletion under the
  lock, checked still held.
"""

from __future__ import annotations

from datetime import datetime

from ..errors import NotFoundError
from ..format.layout import ARTIFACTS, BACKUPS, LOCK, MANIFEST, OPLOG, OPLOG_LOCK, VERIFIED, backup_key, backup_prefix
from ..format.manifest import Manifest
from ..stores import Store, StoreAccess, open_store
from . import catalog, pitr
from .lock import STALE_AFTER_SECONDS, Lock

# which key prefixes each lock covers: its holder is the only writer there
_COVERED = {LOCK: (BACKUPS, ARTIFACTS), OPLOG_LOCK: (OPLOG,)}


class Repository:
    def __init__(self, store: Store):
        self.store = store

    @classmethod
    def at(cls, url: str, access: StoreAccess) -> "Repository":
        """The destination at `url`; `access`: Settings.destination_store."""
        return cls(open_store(url, access))

    def __str__(self) -> str:
        return str(self.store)

    def check(self, write: bool = True) -> None:
        self.store.check(write)

    # -- locks
    def backups_lock(self, operation: str, backup_id: str = "", stale_after: float = STALE_AFTER_SECONDS) -> Lock:
        """Held by `backup` and `prune`: one of them at a time."""
        return Lock(self.store, operation, backup_id, stale_after, key=LOCK)

    def oplog_lock(self, stale_after: float = STALE_AFTER_SECONDS) -> Lock:
        """Held by `oplog`: it runs while a long backup does, under a lock of its own."""
        return Lock(self.store, "oplog", stale_after=stale_after, key=OPLOG_LOCK)

    def collect_leftovers(self, lock: Lock) -> int:
        """Unfinished uploads and partial files that killed runs left below the prefixes
        `lock` covers; -> how many. The holder is the only writer there, so they are dead."""
        lock.ensure_held()
        return self.store.abort_unfinished_writes(_COVERED[lock.key])

    # -- catalogs
    def backups(self, now: datetime | None = None) -> catalog.Catalog:
        return catalog.scan(self.store, now)

    def slices(self) -> pitr.Slices:
        return pitr.scan(self.store)

    def resolve(self, backup_id: str) -> Manifest:
        return catalog.resolve(self.store, backup_id)

    # -- commits
    def commit(self, lock: Lock, key: str, data: bytes) -> None:
        """Write a manifest (a backup's or a slice's): the commit point of a run."""
        self.store.sync()
        lock.ensure_held()
        self.store.put_durable(key, data)

    def commit_verdict(self, backup_id: str, data: bytes) -> None:
        """A test restore's verdict, after its backup's manifest (no lock: it adds, never removes)."""
        self.store.sync()
        self.store.put_durable(backup_key(backup_id, VERIFIED), data)

    # -- deletions (under the backups' lock)
    def delete_backup(self, lock: Lock, backup_id: str) -> None:
        """A complete backup: its manifest first, then the rest of its folder."""
        lock.ensure_held()
        self.store.delete([backup_key(backup_id, MANIFEST)])
        self._delete_folder(lock, backup_id)

    def delete_incomplete(self, lock: Lock, backup_id: str) -> bool:
        """A backup without a manifest: deleted only once its manifest is proven absent (a read
        that says "no such object", not one that failed); False when it could not be proven."""
        lock.ensure_held()
        try:
            self.store.get_bytes(backup_key(backup_id, MANIFEST))
            return False            # it has one after all: not ours to delete as incomplete
        except NotFoundError:
            pass
        self._delete_folder(lock, backup_id)
        return True

    def _delete_folder(self, lock: Lock, backup_id: str) -> None:
        keys = [o.key for o in self.store.list(backup_prefix(backup_id))]
        lock.ensure_held()
        self.store.delete(keys)

    def delete_artifacts(self, lock: Lock, keys: list[str]) -> None:
        lock.ensure_held()
        self.store.delete([ARTIFACTS + k for k in keys])

    def delete_slice(self, lock: Lock, s: "pitr.Slice | pitr.DamagedSlice") -> None:
        """Its manifest first, as a backup's."""
        lock.ensure_held()
        self.store.delete([s.manifest_key])
        self.store.delete([s.data_key])

    def stored_artifacts(self) -> dict[str, int]:
        """Artifact key -> size, of every artifact object at the destination."""
        return {o.key[len(ARTIFACTS):]: o.size for o in self.store.list(ARTIFACTS)}
