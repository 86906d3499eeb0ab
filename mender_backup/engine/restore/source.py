"""What a restore reads: a backup (its manifest), a plain mongodump archive (`--archive
URL`), or a point in time (`--to-time`: a base backup and the oplog slices after it).

Every kind answers the same four questions, in this order:
 - prove(): everything checked before the restore's first write (a backup's sha256 and
   check_plan; a vendor archive's full parse; a point in time's slices, fetched and checked);
 - open(): the proven archive's compressed bytes (decrypted when encrypted);
 - expected(): what the loaded collections are compared with (a backup's manifest; a vendor
   archive has nothing but its own scan, so its scan's counts and digests);
 - oplog(): the slices that replay after the archive's own oplog ([] but for a point in time).
"""

from __future__ import annotations

import contextlib
from typing import BinaryIO, Callable

from ...errors import MenderBackupError, UsageError
from ...format.encryption import Keyring
from ...format.layout import backup_key
from ...format.manifest import Manifest
from ...format.slices import parse_time
from ...output import Reporter
from ...stores import Store, open_store, split_object_url
from .. import catalog, integrity, pitr, spool
from ..integrity import Namespace
from ..repository import Repository


class Source:
    """The common part: a store, a label for the summary, and an opener once proven."""
    manifest: Manifest | None = None        # a backup's (None for a vendor archive)
    point: pitr.Plan | None = None          # a point in time's base and slices

    def __init__(self, store: Store, key: str, reporter: Reporter, keyring: Keyring | None,
                 tmp_limit: int | None = None):
        self.store, self.key, self.reporter, self.keyring = store, key, reporter, keyring
        self.tmp_limit = tmp_limit          # what /tmp may hold for a local copy (Settings)
        self._opener: Callable[[], BinaryIO] | None = None

    @property
    def label(self) -> str:
        """What the summary calls it: a backup's id, an archive's key."""
        return self.manifest.id if self.manifest else self.key

    def prove(self, stack: contextlib.ExitStack) -> None:
        raise NotImplementedError

    def open(self) -> BinaryIO:
        raise NotImplementedError

    def counts(self) -> dict[Namespace, int]:
        """Documents per archive namespace (known once proven)."""
        raise NotImplementedError

    def expected(self) -> dict[Namespace, integrity.Expected]:
        raise NotImplementedError

    def oplog(self) -> list:
        """[(slice, opener of its compressed bytes)] to replay after the archive's own oplog."""
        return []


class Backup(Source):
    """A backup from a destination, proven against its manifest."""

    def __init__(self, store: Store, manifest: Manifest, reporter: Reporter, keyring: Keyring | None,
                 tmp_limit: int | None = None):
        super().__init__(store, backup_key(manifest.id, manifest.archive.key), reporter, keyring, tmp_limit)
        self.manifest = manifest

    def prove(self, stack: contextlib.ExitStack) -> None:
        # one read: sha256, the full parse against the manifest, and a local copy of a remote archive
        self._opener = stack.enter_context(spool.local_copy(self.store, self.manifest, self.reporter,
                                                            self.keyring, self.tmp_limit))

    def open(self) -> BinaryIO:
        return integrity.open_archive(self.store, self.manifest, self.keyring, self._opener)

    def counts(self) -> dict[Namespace, int]:
        return {(db, c): e.count for db, colls in self.manifest.databases.items() for c, e in colls.items()}

    def expected(self) -> dict[Namespace, integrity.Expected]:
        return integrity.expected_from_manifest(self.manifest)


class PointInTime(Backup):
    """The base backup pitr.choose picked, and the slices from its consistency point on."""

    def __init__(self, store: Store, point: pitr.Plan, reporter: Reporter, keyring: Keyring | None,
                 tmp_limit: int | None = None):
        super().__init__(store, point.manifest, reporter, keyring, tmp_limit)
        self.point = point
        self._slices: list = []

    def prove(self, stack: contextlib.ExitStack) -> None:
        super().prove(stack)
        # every slice fetched and checked (size, sha256, decryption) before the target is touched
        self._slices = stack.enter_context(pitr.fetched(self.store, self.point, self.reporter, self.keyring,
                                                                    self.tmp_limit))

    def oplog(self) -> list:
        return self._slices


class Vendor(Source):
    """A plain mongodump archive: no manifest, so its full parse is its proof and its record."""

    def __init__(self, store: Store, key: str, reporter: Reporter, keyring: Keyring | None,
                 tmp_limit: int | None = None):
        super().__init__(store, key, reporter, keyring, tmp_limit)
        self._scan: integrity.ArchiveContents | None = None

    def prove(self, stack: contextlib.ExitStack) -> None:
        opener, first = stack.enter_context(spool.vendor_copy(self.store, self.key, self.reporter,
                                                                          self.tmp_limit))
        with contextlib.closing(first) as f:
            self._scan = integrity.scan_archive(f, self.reporter, f"checking {self.key}")
        self._opener = opener

    def open(self) -> BinaryIO:
        return self._opener()

    def counts(self) -> dict[Namespace, int]:
        return {k: d.count for k, d in self._scan.digests.items()}

    def expected(self) -> dict[Namespace, integrity.Expected]:
        return integrity.expected_from_digests(self._scan.digests)


def resolve(opts, reporter: Reporter) -> Source:
    """The source the options name (refusals are one line, and come before any read of the archive)."""
    if opts.archive:
        if opts.backup_id or opts.to_time:
            raise UsageError("give either a backup id (or --to-time) or --archive, not both")
        store, key = split_object_url(opts.archive, opts.settings.destination_store)
        return Vendor(store, key, reporter, opts.keyring, opts.settings.tmp_limit)
    if not opts.backup_id and not opts.to_time:
        raise UsageError("no backup id given (an id from `mender-backup list`, `latest`, --to-time TIME or "
                         "--archive URL)")
    store = open_store(opts.source or "", opts.settings.destination_store)
    manifest = catalog.resolve(store, opts.backup_id) if opts.backup_id else None
    if opts.to_time:
        return PointInTime(store, _point_in_time(store, opts.to_time, manifest), reporter, opts.keyring,
                           opts.settings.tmp_limit)
    return Backup(store, manifest, reporter, opts.keyring, opts.settings.tmp_limit)


def _point_in_time(store: Store, to_time: str, manifest: Manifest | None) -> pitr.Plan:
    """The base backup and the slices up to `to_time` (refusals before any write)."""
    when, ts = parse_time(to_time)
    repo = Repository(store)
    cat, slices = repo.backups(), repo.slices()
    slices.require_readable(f"cannot plan a restore to {to_time}")
    if cat.read_errors and not manifest:
        raise MenderBackupError(f"cannot choose the base of a restore to {to_time}: backup "
                                f"{cat.read_errors[0].id}'s {cat.read_errors[0].problem}")
    backups = [e.manifest for e in cat.complete]
    return pitr.choose(backups, slices.valid, pitr.Target(when, ts), manifest.id if manifest else None)
