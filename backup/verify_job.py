"""`mender-backup verify`: prove a backup is intact, without touching any database.

Plain: the archive's sha256 and size match the manifest and every artifact the
manifest lists is present with its size. --deep: also decompress and parse the
whole archive (structure, per-namespace CRCs) and recompute every collection's
count and digest.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import BinaryIO

from . import artifacts, catalog, compression
from .archive import ArchiveReader, Prelude
from .digest import CollectionDigest
from .errors import IntegrityError
from .manifest import Manifest
from .output import Reporter
from .store import Store


class _Hashing:
    """A read-through stream that hashes and counts what passes."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True


def check_sha256(store: Store, manifest: Manifest, reporter: Reporter) -> None:
    key = catalog.backup_key(manifest.id, manifest.archive.key)
    with contextlib.closing(store.open_read(key)) as f, \
            reporter.progress(f"checking archive of {manifest.id}", total=manifest.archive.size) as prog:
        h = hashlib.sha256()
        size = 0
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
            prog.advance(len(chunk))
    if size != manifest.archive.size or h.hexdigest() != manifest.archive.sha256:
        raise IntegrityError(f"archive of backup {manifest.id} is corrupt: sha256 {h.hexdigest()[:16]}… "
                             f"size {size}, the manifest says {manifest.archive.sha256[:16]}… size "
                             f"{manifest.archive.size}")


@dataclass
class ArchiveContents:
    prelude: Prelude
    compression: str
    digests: dict[tuple[str, str], CollectionDigest] = field(default_factory=dict)


def scan_archive(stream: BinaryIO, reporter: Reporter, what: str, total: int | None = None) -> ArchiveContents:
    """Read a whole archive (any compression): structure, CRCs, counts and digests."""
    kind, plain = compression.decompressor(stream)
    try:
        reader = ArchiveReader(plain)
        contents = ArchiveContents(reader.prelude, kind)
        for cm in reader.prelude.collections:
            if cm.type != "view":
                contents.digests[(cm.db, cm.collection)] = CollectionDigest()
        with reporter.progress(what, total=None, unit="documents") as prog:
            for seg in reader.segments():
                contents.digests.setdefault((seg.db, seg.collection), CollectionDigest()).update(seg.data)
                prog.advance(seg.count)
    except (EOFError, OSError, ValueError) as exc:
        # decompressors report truncation and corruption in their own ways
        raise IntegrityError(f"{what}: archive is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    except Exception as exc:
        if isinstance(exc, IntegrityError):
            raise
        if type(exc).__module__.startswith("zstd") or "zstd" in type(exc).__name__.lower():
            raise IntegrityError(f"{what}: archive is corrupt ({exc})") from None
        raise
    return contents


def compare(manifest: Manifest, digests: dict[tuple[str, str], CollectionDigest], where: str,
            databases: set[str] | None = None) -> list[str]:
    """Differences between the manifest's counts/digests and what was found."""
    problems = []
    for db, colls in manifest.databases.items():
        if databases and db not in databases:
            continue
        for name, entry in colls.items():
            if entry.type == "view":
                continue
            d = digests.get((db, name))
            if d is None:
                problems.append(f"{db}.{name}: missing in {where}")
            elif d.count != entry.count:
                problems.append(f"{db}.{name}: {d.count} documents in {where}, manifest says {entry.count}")
            elif d.hexdigest() != entry.digest:
                problems.append(f"{db}.{name}: content digest differs in {where}")
    return problems


def run(store: Store, backup_id: str, deep: bool, reporter: Reporter) -> dict:
    manifest = catalog.resolve(store, backup_id)
    check_sha256(store, manifest, reporter)
    present = artifacts.inventory(store, catalog.ARTIFACTS)
    missing = artifacts.check_complete(manifest.artifacts, present)
    if missing:
        raise IntegrityError(f"backup {manifest.id}: {len(missing)} artifact(s) missing or of the wrong size "
                             f"in the artifact store (e.g. {missing[0]})")
    result = {"id": manifest.id, "archive_sha256": "ok", "artifacts": len(manifest.artifacts), "deep": deep}
    if deep:
        key = catalog.backup_key(manifest.id, manifest.archive.key)
        with contextlib.closing(store.open_read(key)) as f:
            contents = scan_archive(f, reporter, f"reading archive of {manifest.id}")
        problems = compare(manifest, contents.digests, "the archive")
        if problems:
            raise IntegrityError(f"backup {manifest.id}: " + "; ".join(problems[:5]))
        result["documents"] = sum(d.count for d in contents.digests.values())
        result["collections"] = len(contents.digests)
    return result
