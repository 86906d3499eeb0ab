"""Integrity checks shared by verify and restore: the archive's sha256 against
the manifest, a full read of an archive (structure, CRCs, counts, digests), and
the comparison of what was found with what was expected."""

from __future__ import annotations

import contextlib
import gzip
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Mapping

from ..errors import IntegrityError
from ..format import compression
from ..format.archive import ArchiveReader, Prelude
from ..format.digest import CollectionDigest, HashingReader
from ..format.encryption import Keyring, decryptor
from ..format.layout import backup_key
from ..format.manifest import Manifest
from ..format.metadata import CollectionSpec
from ..output import Reporter
from ..stores import Store
from .namespaces import BUCKETS, OPLOG

Namespace = tuple[str, str]


def require_key(manifest: Manifest, keyring: Keyring | None) -> None:
    """An encrypted backup and no key for it: one line naming the key it needs (exit 6),
    before a byte is read."""
    if manifest.encryption:
        (keyring or Keyring([])).require(manifest.encryption.key_fingerprint, f"backup {manifest.id}")


def check_sha256(store: Store, manifest: Manifest, reporter: Reporter, keyring: Keyring | None = None,
                 copy: BinaryIO | None = None, scan: bool = False) -> None:
    """The stored archive against the manifest's sha256 and size; an encrypted one is
    also decrypted in the same read, so every segment is authenticated (the key is
    right and nothing was changed) before a restore writes anything. With `copy`, every
    byte read is also written there: one read of a remote archive both proves it and
    leaves a local copy to restore from. With `scan`, that same read also decompresses and
    parses the archive and proves it holds what the manifest lists (check_plan): a restore
    knows all of it is there before its first write."""
    require_key(manifest, keyring)
    key = backup_key(manifest.id, manifest.archive.key)
    read_error: IntegrityError | None = None
    what = f"archive of backup {manifest.id}"
    with contextlib.closing(store.open_read(key)) as f, \
            reporter.progress(f"checking archive of {manifest.id}", total=manifest.archive.size) as prog:
        h = HashingReader(f)
        counted = _Counting(h, prog, copy)
        try:
            plain = (decryptor(counted, keyring, archive_context(manifest), what, manifest.encryption.key_fingerprint)
                     if manifest.encryption else counted)
            if scan:
                check_plan(manifest, scan_archive(plain, reporter, what, progress=False))
            elif manifest.encryption:
                while plain.read(1 << 20):
                    pass
        except IntegrityError as exc:
            read_error = exc
        while counted.read(1 << 20):
            pass
    check_digest(manifest, h)          # a changed byte is reported as a checksum mismatch first
    if read_error is not None:
        raise read_error


def check_plan(manifest: Manifest, contents: "ArchiveContents") -> None:
    """The archive holds exactly what the manifest lists (docs/FORMAT.md: nothing that is not
    in the manifest is trusted): every collection and view in both, of the same type, with
    the manifest's count and content digest, the oplog namespace as point_in_time says."""
    listed = {(db, c): e for db, colls in manifest.databases.items() for c, e in colls.items()}
    prelude = {(cm.db, cm.collection): cm for cm in contents.prelude.collections if (cm.db, cm.collection) != OPLOG}

    def data_of(ns: Namespace) -> Namespace:
        """Where the manifest counts a namespace's documents: a time-series collection's
        buckets (system.buckets.<name>) under its own name, unless the manifest lists them."""
        db, c = ns
        base = (db, c[len(BUCKETS):])
        return base if c.startswith(BUCKETS) and ns not in listed and base in listed else ns

    problems = [f"{db}.{c}: in the manifest, not in the archive" for db, c in sorted(listed.keys() - prelude.keys())]
    problems += [f"{db}.{c}: in the archive, not in the manifest" for db, c in sorted(prelude.keys() - listed.keys())
                 if data_of((db, c)) not in listed]
    problems += [f"{db}.{c}: a {cm.type} in the archive, a {listed[(db, c)].type} in the manifest"
                 for (db, c), cm in sorted(prelude.items()) if (db, c) in listed and cm.type != listed[(db, c)].type]
    found: dict[Namespace, CollectionDigest] = {}
    for ns, d in contents.digests.items():
        key = data_of(ns)
        if key in found and found[key].count and d.count:
            problems.append(f"{key[0]}.{key[1]}: documents under two names in the archive")
        elif key not in found or d.count:
            found[key] = d
    pit = manifest.point_in_time
    problems += [f"{db}.{c}: documents in the archive, not in the manifest" for (db, c), d in sorted(found.items())
                 if d.count and (db, c) not in listed and (db, c) != OPLOG]
    if OPLOG in found and found[OPLOG].count and not (pit and pit.oplog):
        problems.append("the archive holds an oplog the manifest does not list")
    # a time-series collection without a digest (our writer counts its data under its
    # buckets, listed as a collection of their own): its count only
    expected = expected_from_manifest(manifest)
    no_digest = {ns for ns in expected if ns != OPLOG and listed[ns].type != "collection" and not listed[ns].digest}
    problems += compare({ns: x for ns, x in expected.items() if ns not in no_digest}, found, "the archive")
    problems += compare({ns: expected[ns] for ns in no_digest}, found, "the archive", counts_only=True)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise IntegrityError(f"backup {manifest.id}: the archive does not hold what the manifest lists: "
                             f"{'; '.join(problems[:5])}{more}")


class _Counting:
    def __init__(self, inner, prog, copy: BinaryIO | None = None):
        self._inner, self._prog, self._copy = inner, prog, copy

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._prog.advance(len(data))
        if self._copy is not None:
            self._copy.write(data)
        return data

    def close(self) -> None:
        pass


def archive_context(manifest: Manifest) -> str:
    """What an encrypted archive is bound to (docs/FORMAT.md, "Encryption")."""
    return f"archive:{manifest.id}"


def open_archive(store: Store, manifest: Manifest, keyring: Keyring | None,
                 opener: Callable[[], BinaryIO] | None = None) -> BinaryIO:
    """The archive's compressed bytes: decrypted (and authenticated) when it is encrypted.
    `opener`: where the stored bytes are read from instead (local_copy)."""
    f = opener() if opener else store.open_read(backup_key(manifest.id, manifest.archive.key))
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
        except (EOFError, ValueError, gzip.BadGzipFile) as exc:
            # (not any OSError: a read of the store that fails is not the archive's fault)
            raise IntegrityError(f"{what}: archive is corrupt or truncated ({type(exc).__name__}: {exc})") from None
        except Exception as exc:
            if type(exc).__module__.startswith("zstd") or "zstd" in type(exc).__name__.lower():
                raise IntegrityError(f"{what}: archive is corrupt ({exc})") from None
            raise
    return guard()


def scan_archive(stream: BinaryIO, reporter: Reporter, what: str, progress: bool = True) -> ArchiveContents:
    """Read a whole archive (any compression): structure, each collection's metadata, CRCs,
    counts and digests.
    `progress`: False when the caller reports the read already (check_sha256)."""
    with decompression_errors(what):
        kind, plain = compression.decompressor(stream)
        reader = ArchiveReader(plain)
        contents = ArchiveContents(reader.prelude, kind)
        for cm in reader.prelude.collections:
            if (cm.db, cm.collection) != OPLOG:     # metadata a restore could not parse is damage too
                CollectionSpec.from_json(cm.db, cm.collection, cm.metadata, cm.type)
            if cm.type != "view":
                contents.digests[(cm.db, cm.collection)] = CollectionDigest()
        with (reporter.progress(what, total=None, unit="documents") if progress
              else contextlib.nullcontext(None)) as prog:
            for seg in reader.segments():
                contents.digests.setdefault((seg.db, seg.collection), CollectionDigest()).update(seg.data)
                if prog is not None:
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
            databases: set[str] | None = None, counts_only: bool = False) -> list[str]:
    """Differences between what was expected and what was found, one line each
    (`counts_only`: what was found has counts, no content digests)."""
    problems = []
    for (db, name), want in sorted(expected.items()):
        if databases and db not in databases:
            continue
        got = found.get((db, name))
        if got is None:
            problems.append(f"{db}.{name}: missing in {where}")
        elif got.count != want.count:
            problems.append(f"{db}.{name}: {got.count} documents in {where}, expected {want.count}")
        elif not counts_only and got.hexdigest() != want.digest:
            problems.append(f"{db}.{name}: content digest differs in {where}")
    return problems
