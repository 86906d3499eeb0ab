"""Local copies of remote archives, so a restore reads S3 once: the archive streamed into a
temporary file while it is proven (integrity.check_sha256 / scan_archive), then restored from
that file. Bounded by what /tmp holds (statvfs, and the emptyDir's sizeLimit the chart passes);
without room, the store is read twice instead: a restore never fails for want of /tmp."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from typing import BinaryIO

from ..errors import IntegrityError
from ..format.layout import backup_key
from ..format.manifest import Manifest
from ..format.encryption import Keyring
from ..output import Reporter, human_bytes
from ..stores import Store
from .integrity import check_sha256


@contextlib.contextmanager
def local_copy(store: Store, manifest: Manifest, reporter: Reporter, keyring: Keyring | None,
               tmp_limit: int | None = None):
    """The archive proven intact (check_sha256), and holding what the manifest lists
    (check_plan), in one read: a local store's file as it
    is; a remote one's (S3) streamed once into a temporary file while it is hashed, so a
    restore reads S3 once (twice when TMPDIR has no room: _room_for_copy). Yields a
    function that opens the proven bytes (as stored)."""
    key = backup_key(manifest.id, manifest.archive.key)
    folder = tempfile.gettempdir()
    if store.local or not _room_for_copy(folder, manifest.archive.size, reporter, tmp_limit):
        check_sha256(store, manifest, reporter, keyring, scan=True)
        yield lambda: store.open_read(key)
        return
    with tempfile.NamedTemporaryFile(prefix="mender-backup-archive-", dir=folder) as spool:
        check_sha256(store, manifest, reporter, keyring, copy=spool, scan=True)
        spool.flush()
        yield lambda: open(spool.name, "rb", buffering=1 << 20)


@contextlib.contextmanager
def vendor_copy(store: Store, key: str, reporter: Reporter, tmp_limit: int | None = None):
    """A plain mongodump archive (no manifest, so no sha256: scan_archive proves it) ->
    (opener of the bytes read, the stream to scan first). From a remote store, the scan's
    read also fills a local temporary file that the restore reads instead (when TMPDIR has
    room for it: _room_for_copy)."""
    folder = tempfile.gettempdir()
    if store.local or not _room_for_copy(folder, _size(store, key), reporter, tmp_limit):
        yield (lambda: store.open_read(key)), store.open_read(key)
        return
    with tempfile.NamedTemporaryFile(prefix="mender-backup-archive-", dir=folder) as spool:
        tee = _Tee(store.open_read(key), spool)
        yield (lambda: open(spool.name, "rb", buffering=1 << 20)), tee
        if not tee.finished:
            raise IntegrityError(f"{key}: the archive was not read to its end")


def _size(store: Store, key: str) -> int:
    return next((o.size for o in store.list(key) if o.key == key), 0)


class _Tee(io.RawIOBase):
    """Reads `inner`, writing what passes to `copy`; `finished` once the end was read."""

    def __init__(self, inner: BinaryIO, copy: BinaryIO):
        self._inner, self._copy, self.finished = inner, copy, False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._inner.read(len(b))
        if not data:
            self.finished = True
            self._copy.flush()
            return 0
        self._copy.write(data)
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def _room_for_copy(folder: str, size: int, reporter: Reporter, tmp_limit: int | None) -> bool:
    """Whether `folder` holds a local copy of a `size` byte archive. When it does not, the
    restore still runs, reading the archive from the store twice (once to prove it, once to
    restore it), as it would with no disk at all: a restore never fails for want of /tmp.
    What the second read brings is checked as it is restored (CRCs, authentication when
    encrypted, and the documents against the manifest's digests with --verify full)."""
    free = free_space(folder, tmp_limit)
    if size <= free:
        return True
    reporter.warn(f"not enough space in {folder} for a local copy of the archive ({human_bytes(size)} needed, "
                  f"{human_bytes(free)} free): reading it from the store twice instead (to read it once, give "
                  f"TMPDIR a larger folder; in the chart: tmpSizeLimit)")
    return False


def free_space(folder: str, limit: int | None = None) -> int:
    """Free bytes in `folder`, and no more than `limit` (Settings.tmp_limit: the chart sets
    MENDER_BACKUP_TMP_LIMIT to the /tmp emptyDir's sizeLimit, which statvfs does not see)."""
    free = shutil.disk_usage(folder).free
    return free if limit is None else min(free, limit)
