"""`mender-backup backup`: dump MongoDB into an archive, copy new artifacts, write the manifest last."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import __version__
from ..format import compression, encryption
from ..format.archive import CollectionMetadata, Header
from ..format.archive_writer import ArchiveWriter
from ..format.digest import CollectionDigest, HashingWriter
from ..format.layout import ARCHIVE, MANIFEST, backup_key, backup_prefix, new_id
from ..format.manifest import (ENCRYPTED_FORMAT_VERSION, OPLOG_FORMAT_VERSION, PLAIN_FORMAT_VERSION,
                               TENANT_STORES_FORMAT_VERSION, ArchiveEntry, CollectionEntry, EncryptionEntry,
                               Manifest)
from ..format.metadata import CollectionSpec
from ..mongo import client as mongo_client
from ..mongo import collections as mongo
from ..output import Reporter, human_bytes
from ..stores import bucket_store, open_store
from .settings import Settings
from . import artifact_sources, mender, mender_secrets, tenant_storage
from .capture import Capture
from .lock import STALE_AFTER_SECONDS, Lock
from .repository import Repository


@dataclass
class BackupOptions:
    mongodb_url: str
    destination: str
    artifacts_bucket: str | None = None
    databases: list[str] = field(default_factory=list)
    compression: str = "zstd"
    parallel: int = 4
    break_lock: bool = False
    lock_stale_after: float = STALE_AFTER_SECONDS
    keyring: encryption.Keyring | None = None      # its first key encrypts the backup; none: plain
    mender_secrets: str = ""                       # Secret names to store (format/secrets_bundle.py)
    mender_namespace: str = ""                     # where they are; default: the kube context's
    stats: dict = field(default_factory=dict)      # filled in: what the run did (for metrics)
    settings: Settings = Settings()                # S3, the Mender release, the kubeconfig


def _dump(client, infos: list[CollectionSpec], writer: ArchiveWriter, parallel: int,
          reporter: Reporter) -> dict[tuple[str, str], CollectionDigest]:
    """Read collections in parallel threads, write their batches interleaved, as mongodump does.
    Memory is bounded by the queue: at most 2*parallel batches in flight. One function (over 60
    lines): the readers, the writer loop and the shutdown share the queues and the stop event,
    and the shutdown's order (stop, then drain so blocked readers wake) is the point."""
    work: queue.Queue = queue.Queue()
    # largest first, as mongodump orders its work: the parallel readers end together, and in
    # the archive the big collections end early, so a restore checks them and builds their
    # indexes while the small ones still stream in (engine/load.py)
    data = [i for i in infos if i.type == "collection"]
    sizes = {(i.db, i.name): mongo.size(client, i.db, i.name) for i in data}
    for info in sorted(data, key=lambda i: -sizes[(i.db, i.name)]):
        work.put(info)
    out: queue.Queue = queue.Queue(maxsize=2 * parallel)
    digests = {(i.db, i.name): CollectionDigest() for i in infos if i.type == "collection"}
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                try:
                    info = work.get_nowait()
                except queue.Empty:
                    break
                d = digests[(info.db, info.name)]
                for batch in mongo.raw_batches(client, info.db, info.name):
                    if stop.is_set():
                        return
                    n = d.update(batch)
                    out.put(("batch", info, batch, n))
                out.put(("end", info, None, 0))
        except BaseException as exc:   # handed to the writer thread, which re-raises it
            out.put(("error", None, exc, 0))
        finally:
            out.put(("done", None, None, 0))

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(max(1, parallel))]
    for t in threads:
        t.start()
    running = len(threads)
    try:
        with reporter.progress("dumping MongoDB", total=None, unit="documents") as prog:
            while running:
                kind, info, payload, n = out.get()
                if kind == "batch":
                    writer.write_segment(info.db, info.name, payload)
                    prog.advance(n)
                elif kind == "end":
                    writer.end_collection(info.db, info.name)
                elif kind == "error":
                    raise payload
                else:
                    running -= 1
    finally:
        stop.set()
        # unblock readers waiting on a full queue; a reader stuck in a read from a server that
        # stopped answering is not waited for (a daemon thread): a run killed at its deadline
        # must release its lock within the pod's grace period
        give_up = time.monotonic() + 5
        while any(t.is_alive() for t in threads) and time.monotonic() < give_up:
            with contextlib.suppress(queue.Empty):
                out.get(timeout=0.1)
    return digests


@dataclass
class BackupResult:
    """A backup made: its manifest, and what the run copied (for metrics)."""
    manifest: Manifest
    artifacts_copied: int = 0
    artifact_bytes_copied: int = 0
    metrics_pushed: bool | None = None  # set by the caller once the run's metrics are out

    def to_json(self) -> dict:
        m, pit = self.manifest, self.manifest.point_in_time
        return {"id": m.id, "databases": sorted(m.databases), "documents": m.document_count,
                "archive_size": m.archive.size, "artifacts": len(m.artifacts), "key_fingerprint": self._fingerprint,
                "mender_secrets": m.mender_secrets.secrets if m.mender_secrets else None,
                "consistent": pit.consistent, "consistent_at": pit.end.as_json() if pit.end else None,
                "metrics_pushed": self.metrics_pushed}

    def describe(self) -> str:
        m, pit, fp = self.manifest, self.manifest.point_in_time, self._fingerprint
        return (f"backup {m.id} complete: {m.document_count} documents in {len(m.databases)} databases, "
                f"archive {human_bytes(m.archive.size)}, {len(m.artifacts)} artifacts"
                + (f", encrypted with key {fp}" if fp else "")
                + (f", Secrets {', '.join(m.mender_secrets.secrets)}" if m.mender_secrets else "") + "; "
                + (f"consistent at {pit.end.time}" if pit.end else
                   "point-in-time consistent" if pit.consistent else "NOT point-in-time consistent"))

    @property
    def _fingerprint(self) -> str | None:
        return self.manifest.encryption.key_fingerprint if self.manifest.encryption else None


def run(opts: BackupOptions, reporter: Reporter) -> BackupResult:
    comp = compression.check(opts.compression)
    dest = open_store(opts.destination, opts.settings.destination_store)
    source_bucket = bucket_store(opts.artifacts_bucket, opts.settings.source_store) if opts.artifacts_bucket else None
    client = mongo_client.connect(opts.mongodb_url)
    dest.check()
    # with the artifacts, those of tenants with a store of their own (their settings, in MongoDB)
    tenants = (tenant_storage.read(client, mongo_client.list_databases(client, opts.databases or None))
               if source_bucket else [])
    sources = artifact_sources.sources(source_bucket, tenants)
    artifact_sources.check(sources)
    bundle = _collect_secrets(opts, reporter)     # before the long dump: a missing key Secret fails fast

    backup_id = new_id()
    started = datetime.now(timezone.utc)
    repo = Repository(dest)
    with repo.backups_lock("backup", backup_id, opts.lock_stale_after) as lock:
        lock.acquire(opts.break_lock, reporter.warn)
        n = repo.collect_leftovers(lock)   # of killed runs: we hold the lock, none is running
        if n:
            reporter.info(f"removed {n} unfinished upload(s) or partial file(s) left by an earlier run")
        try:
            m = _backup(opts, reporter, repo, sources, tenants, client, backup_id, started, comp, lock, bundle)
            return BackupResult(m, opts.stats.get("artifacts_copied", 0), opts.stats.get("artifact_bytes_copied", 0))
        except BaseException:
            # nothing half-written: the archive of a failed backup goes (best effort)
            with contextlib.suppress(Exception):
                dest.delete([o.key for o in dest.list(backup_prefix(backup_id))])
            raise


def _collect_secrets(opts: BackupOptions, reporter: Reporter):
    from ..format.secrets_bundle import parse_names
    from ..kube.connection import Kube
    required, optional = parse_names(opts.mender_secrets)
    if not required + optional:
        return None
    mender_secrets.require_encryption(required + optional, opts.keyring)
    kube = Kube.from_env(opts.settings.environ)
    return mender_secrets.collect(kube, opts.mender_namespace or kube.namespace, required, optional, reporter)


def _sealed(out, key: encryption.Key | None, context: str):
    return encryption.encryptor(out, key, context) if key else contextlib.nullcontext(out)


def _backup(opts: BackupOptions, reporter: Reporter, repo: Repository, sources: list, tenants: list, client,
            backup_id: str, started: datetime, comp: str, lock: Lock, bundle=None) -> Manifest:
    dest = repo.store
    # the oplog position first: a collection created after it is then in the dump or in the oplog
    capture = Capture(client, reporter, opts.databases)
    dbs = mongo_client.list_databases(client, opts.databases or None)
    infos = [i for db in dbs for i in mongo.specs(client, db)]
    server_version = mongo_client.server_version(client)
    reporter.info(f"backup {backup_id}: {len(dbs)} database(s), {len(infos)} collection(s) from MongoDB "
                  f"{server_version} to {dest}", backup_id=backup_id, databases=dbs)

    key = opts.keyring.current if opts.keyring else None
    archive_key = backup_key(backup_id, ARCHIVE + compression.EXTENSIONS[comp] + (encryption.EXTENSION if key else ""))
    with dest.open_write(archive_key) as raw_out:
        hashing = HashingWriter(raw_out)
        # zstd in one worker thread of its own, with 1 MiB jobs: on DocumentDB our process, not
        # the server, sets a dump's pace, and this thread writes, hashes and CRCs under the
        # GIL while the worker compresses outside it (13% faster, same peak memory); xz: a
        # thread per core, as `xz -T0`. Compressed, then encrypted (ciphertext does not compress)
        threads = 1 if comp == "zstd" else None
        with _sealed(hashing, key, f"archive:{backup_id}") as sealed, \
                compression.compressor(sealed, comp, threads=threads) as z:
            writer = ArchiveWriter(z)
            writer.write_prelude(
                Header(concurrent_collections=opts.parallel, server_version=server_version,
                       tool_version=f"mender-backup {__version__}"),
                [CollectionMetadata(i.db, i.name, i.to_json(), 0, i.type) for i in infos] + capture.metadata())
            digests = _dump(client, infos, writer, opts.parallel, reporter)
            point_in_time = capture.finish(writer)
    databases: dict[str, dict[str, CollectionEntry]] = {db: {} for db in dbs}
    for i in infos:
        d = digests.get((i.db, i.name))
        databases[i.db][i.name] = CollectionEntry(d.count if d else 0, d.hexdigest() if d else "",
                                                  d.size if d else 0, i.type)
    docs = sum(d.count for d in digests.values())
    reporter.info(f"archive written: {docs} documents, {hashing.size} bytes ({comp})",
                  documents=docs, archive_bytes=hashing.size)

    artifact_entries = artifact_sources.copy_into(dest, sources, reporter, opts.stats)
    tenant_stores = artifact_sources.described(tenants, artifact_entries)
    manifest = Manifest(
        id=backup_id, created_at=started.isoformat(), finished_at=datetime.now(timezone.utc).isoformat(),
        tool_version=__version__, server_version=server_version,
        archive=ArchiveEntry(archive_key.rsplit("/", 1)[1], hashing.size, hashing.hexdigest(), comp),
        databases=databases, artifacts_bucket=sources[0].store.bucket if sources and not sources[0].tenant else None,
        artifacts=artifact_entries, point_in_time=point_in_time, tenant_stores=tenant_stores,
        mender={**opts.settings.mender_release, "migrations": mender.migration_versions(client, dbs)},
        # the lowest format that reads this backup right (docs/FORMAT.md, compatibility)
        format_version=max(OPLOG_FORMAT_VERSION if point_in_time.consistent else PLAIN_FORMAT_VERSION,
                           ENCRYPTED_FORMAT_VERSION if key else PLAIN_FORMAT_VERSION,
                           TENANT_STORES_FORMAT_VERSION if tenant_stores else PLAIN_FORMAT_VERSION),
    )
    if key:
        manifest.encryption = EncryptionEntry(encryption.ALGORITHM, key.fingerprint)
        if bundle is not None:
            manifest.mender_secrets = mender_secrets.store_bundle(dest, backup_id, bundle, key)
    # the manifest is the commit point: written last, in one piece, after all else is durable,
    # and only while we still hold the lock
    repo.commit(lock, backup_key(backup_id, MANIFEST), manifest.to_json())
    return manifest
