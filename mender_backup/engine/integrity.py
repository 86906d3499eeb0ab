"""Integrity checks shared by verify and restore: the archive's sha256 against
the manifest, a full read of an archive (structure, CRCs, counts, digests), and
the comparison of what was found with what was expected."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import BinaryIO, Mapping

from ..errors import IntegrityError
from ..format import compression
from ..format.archive import ArchiveReader, Prelude
from ..format.digest import CollectionDigest, HashingReader
from ..format.encryption import Keyring, decryptor
from ..format.layout import backup_key
from ..format.manifest import Manifest
from ..output import Reporter
from ..stores import Store

Namespace = tuple[str, str]


def require_key(manifest: Manifest, keyring: Keyring | None) -> None:
    """An encrypted backup and no key for it: one line naming the key it needs (exit 6),
    before a byte is read."""
    if manifest.encryption:
        (keyring or Keyring([])).require(manifest.encryption.key_fingerprint, f"backup {manifest.id}")


def check_sha256(store: Store, manifest: Manifest, reporter: Reporter, keyring: Keyring | None = None) -> None:
    """The stored archive against the manifest's sha256 and size; an encrypted one is
    also decrypted in the same read, so every segment is authenticated (the key is
    right and nothing was changed) before a restore writes anything."""
    require_key(manifest, keyring)
    key = backup_key(manifest.id, manifest.archive.key)
    auth_error: IntegrityError | None = None
    with contextlib.closing(store.open_read(key)) as f, \
            reporter.progress(f"checking archive of {manifest.id}", total=manifest.archive.size) as prog:
        h = HashingReader(f)
        counted = _Counting(h, prog)
        if manifest.encryption:
            try:
                plain = decryptor(counted, keyring, archive_context(manifest), f"archive of backup {manifest.id}",
                                  manifest.encryption.key_fingerprint)
                while plain.read(1 << 20):
                    pass
            except IntegrityError as exc:
                auth_error = exc
        while counted.read(1 << 20):
            pass
    check_digest(manifest, h)          # a changed byte is reported as a checksum mismatch first
    if auth_error is not None:
        raise auth_error


class _Counting:
    def __init__(self, inner, prog):
        self._inner, self._prog = inner, prog

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._prog.advance(len(data))
        return data

    def close(self) -> None:
        pass


def archive_context(manifest: Manifest) -> str:
    """What an encrypted archive is bound to (docs/FORMAT.md, "Encryption")."""
    return f"archive:{manifest.id}"


def open_archive(store: Store, manifest: Manifest, keyring: Keyring | None) -> BinaryIO:
    """The archive's compressed bytes: decrypted (and authenticated) when it is encrypted."""
    f = store.open_read(backup_key(manifest.id, manifest.archive.key))
    if not manifest.encryption:
        return f
    require_key(manifest, keyring)
    return decryptor(f, keyring, archive_context(manifest), f"archive of backup {manifest.id}",
                     manifest.encryption.key_fingerprint)


def check_digest(manifest: Manifest, h: HashingReader) -> None:
    if h.size != manifest.archive.size or h.hexdigest() != manifest.archive.sha256:
        raise IntegrityError(f"archive of backup {manifest.id} is corrupt: sha256 {h.hexdigest()[:16]}… "
                             f"size {h.size}, the manifest says {manifest.archive.sha256[:16]}… size "
                             f"{manifest.archive.size}")


@dataclass
class ArchiveContents:
    prelude: Prelude
    compression: str
    digests: dict[Namespace, CollectionDigest] = field(default_factory=dict)


def decompression_errors(what: str):
    """Decompressors report truncation and corruption in their own ways: all of
    them are an integrity error of the archive."""
    @contextlib.contextmanager
    def guard():
        try:
            yield
        except IntegrityError:
            raise
        except (EOFError, OSError, ValueError) as exc:
            raise IntegrityError(f"{what}: archive is corrupt or truncated ({type(exc).__name__}: {exc})") from None
        except Exception as exc:
            if type(exc).__module__.startswith("zstd") or "zstd" in type(exc).__name__.lower():
                raise IntegrityError(f"{what}: archive is corrupt ({exc})") from None
            raise
    return guard()


def scan_archive(stream: BinaryIO, reporter: Reporter, what: str) -> ArchiveContents:
    """Read a whole archive (any compression): structure, CRCs, counts and digests."""
    with decompression_errors(what):
        kind, plain = compression.decompressor(stream)
        reader = ArchiveReader(plain)
        contents = ArchiveContents(reader.prelude, kind)
        for cm in reader.prelude.collections:
            if cm.type != "view":
                contents.digests[(cm.db, cm.collection)] = CollectionDigest()
        with reporter.progress(what, total=None, unit="documents") as prog:
            for seg in reader.segments():
                contents.digests.setdefault((seg.db, seg.collection), CollectionDigest()).update(seg.data)
                prog.advance(seg.count)
    return contents


@dataclass(frozen=True)
class Expected:
    count: int
    digest: str


def expected_from_manifest(manifest: Manifest) -> dict[Namespace, Expected]:
    out = {(db, name): Expected(e.count, e.digest)
           for db, colls in manifest.databases.items() for name, e in colls.items() if e.type != "view"}
    pit = manifest.point_in_time
    if pit and pit.oplog:          # the archive's oplog namespace (database "", collection "oplog")
        out[("", "oplog")] = Expected(pit.oplog.count, pit.oplog.digest)
    return out


def expected_from_digests(digests: Mapping[Namespace, CollectionDigest]) -> dict[Namespace, Expected]:
    return {ns: Expected(d.count, d.hexdigest()) for ns, d in digests.items()}


def compare(expected: Mapping[Namespace, Expected], found: Mapping[Namespace, CollectionDigest], where: str,
            databases: set[str] | None = None) -> list[str]:
    """Differences between what was expected and what was found, one line each."""
    problems = []
    for (db, name), want in sorted(expected.items()):
        if databases and db not in databases:
            continue
        got = found.get((db, name))
        if got is None:
            problems.append(f"{db}.{name}: missing in {where}")
        elif got.count != want.count:
            problems.append(f"{db}.{name}: {got.count} documents in {where}, expected {want.count}")
        elif got.hexdigest() != want.digest:
            problems.append(f"{db}.{name}: content digest differs in {where}")
    return problems
