"""`mender-backup restore`: a backup (or a plain mongodump archive) back into MongoDB and a bucket.

Order of work, each step only when the one before succeeded:
 1. prove the archive intact before touching anything: sha256 against the
    manifest, or, for a vendor archive without manifest, a full parse (CRCs);
 2. plan: refuse a target database that holds data unless --drop; --dry-run
    prints the plan and stops;
 3. drop (only the collections the backup holds), create with options, insert,
    build indexes, copy artifacts;
 4. read everything back and compare counts, digests and index names with the
    manifest: any difference fails the restore loudly.
"""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import datetime, timezone
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..errors import ConflictError, IntegrityError, UsageError
from ..format import compression
from ..format.archive import ArchiveReader
from ..format.encryption import Keyring
from ..format.digest import CollectionDigest
from ..format.layout import ARTIFACTS, backup_key
from ..format.metadata import CollectionSpec
from ..mongo import client as mongo_client
from ..mongo import collections as mongo
from ..output import Reporter, human_bytes
from ..stores import bucket_store, destination_store, split_object_url
from . import artifacts, catalog, integrity, mender_secrets

INSERT_WORKERS = 4
SEGMENT_BYTES = 4 * 1024 * 1024


@dataclass
class RestoreOptions:
    mongodb_url: str
    backup_id: str | None = None
    source: str | None = None              # where the backups are (the backup destination)
    archive: str | None = None             # or: a plain mongodump archive (file or s3 URL)
    artifacts_bucket: str | None = None    # target bucket for the artifacts
    databases: list[str] = field(default_factory=list)
    drop: bool = False
    dry_run: bool = False
    keyring: Keyring | None = None         # for encrypted backups
    secrets: bool = False                  # also put Mender's key Secrets back (Kubernetes API)
    overwrite_secrets: bool = False        # replace live Secrets that hold other keys
    secrets_namespace: str = ""            # default: the namespace they were read from
    db_prefix: str = ""                    # restore database X as <prefix>X (verify --restore-into)
    skip_artifacts: bool = False           # databases only, on purpose (no warning)


@dataclass
class Plan:
    namespaces: list[CollectionSpec]
    counts: dict[tuple[str, str], int]                 # expected documents per namespace
    to_drop: dict[tuple[str, str], int]                # existing collections that --drop replaces
    kept: dict[str, list[str]]                         # other collections in target dbs, untouched
    artifacts: artifacts.CopyPlan | None = None

    def describe(self) -> dict:
        return {
            "drop": [{"namespace": f"{db}.{c}", "documents": n} for (db, c), n in sorted(self.to_drop.items())],
            "create": [{"namespace": f"{i.db}.{i.name}", "type": i.type,
                        "documents": self.counts.get((i.db, i.name), 0),
                        "indexes": sorted(x.get("name", "") for x in i.indexes)} for i in self.namespaces],
            "untouched": [f"{db}.{c}" for db, cs in sorted(self.kept.items()) for c in cs],
            "artifacts": None if self.artifacts is None else {
                "copy": len(self.artifacts.to_copy), "bytes": self.artifacts.bytes,
                "already_present": self.artifacts.present},
        }


def _open_archive(opts: RestoreOptions, reporter: Reporter):
    """-> (store, key, manifest or None, the archive scan for vendor archives)"""
    if opts.archive:
        if opts.backup_id:
            raise UsageError("give either a backup id or --archive, not both")
        store, key = split_object_url(opts.archive)
        with contextlib.closing(store.open_read(key)) as f:
            contents = integrity.scan_archive(f, reporter, f"checking {key}")
        return store, key, None, contents
    if not opts.backup_id:
        raise UsageError("no backup id given (an id from `mender-backup list`, `latest`, or --archive URL)")
    store = destination_store(opts.source or "")
    manifest = catalog.resolve(store, opts.backup_id)
    integrity.check_sha256(store, manifest, reporter, opts.keyring)
    return store, backup_key(manifest.id, manifest.archive.key), manifest, None


def _read(store, key: str, manifest, keyring: Keyring | None):
    """The archive's compressed bytes (decrypted when the backup is encrypted)."""
    return integrity.open_archive(store, manifest, keyring) if manifest else store.open_read(key)


def _renamed(prefix: str, infos: list[CollectionSpec], *keyed: dict) -> list[CollectionSpec]:
    """Databases X as <prefix>X: the specs, and (in place) every dict keyed by (db, name)."""
    if not prefix:
        return infos
    for d in keyed:
        for (db, c) in list(d):
            d[(prefix + db, c)] = d.pop((db, c))
    return [dataclasses.replace(i, db=prefix + i.db) for i in infos]


def _plan(client, prelude_infos: list[CollectionSpec], counts, opts: RestoreOptions) -> Plan:
    wanted = [i for i in prelude_infos if not opts.databases or i.db in opts.databases]
    if opts.databases:
        missing = sorted(set(opts.databases) - {i.db for i in prelude_infos})
        if missing:
            raise UsageError(f"database(s) not in the backup: {', '.join(missing)}")
    existing = mongo.existing_counts(client, [(i.db, i.name) for i in wanted])
    ours = {(i.db, i.name) for i in wanted}
    kept: dict[str, list[str]] = {}
    busy: dict[str, int] = {}
    for db in sorted({i.db for i in wanted}):
        for c in client[db].list_collection_names():
            if c.startswith("system."):
                continue
            n = client[db][c].estimated_document_count()
            if n:
                busy[db] = busy.get(db, 0) + n
            if (db, c) not in ours:
                kept.setdefault(db, []).append(c)
    if busy and not opts.drop:
        desc = ", ".join(f"{db} ({n} documents)" for db, n in sorted(busy.items()))
        raise ConflictError(f"target database(s) not empty: {desc}; rerun with --drop to replace the "
                            f"collections this backup holds (others are left alone), or --dry-run to see the plan")
    # without --drop, collections that exist empty (a service may create them at start-up) are added to
    to_drop = dict(existing) if opts.drop else {}
    return Plan(wanted, {k: counts.get(k, 0) for k in ours}, to_drop, kept)


def _insert_all(client, stream, wanted: set[tuple[str, str]], reporter: Reporter, total: int,
                prefix: str = "") -> None:
    kind, plain = compression.decompressor(stream)
    reader = ArchiveReader(plain)
    with ThreadPoolExecutor(INSERT_WORKERS) as pool, \
            reporter.progress("restoring documents", total=total or None, unit="documents") as prog:
        pending = set()
        for seg in reader.segments(SEGMENT_BYTES):
            db = prefix + seg.db
            if (db, seg.collection) not in wanted:
                continue
            if len(pending) >= 2 * INSERT_WORKERS:          # bounded memory: wait for a slot
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in done:
                    prog.advance(f.result())
            pending.add(pool.submit(mongo.insert_raw, client, db, seg.collection, seg.data))
        done, _ = wait(pending, return_when=FIRST_EXCEPTION)
        for f in done:
            prog.advance(f.result())


def _verify_target(client, plan: Plan, expected: dict[tuple[str, str], integrity.Expected],
                   reporter: Reporter, ttl: bool) -> None:
    """Counts, digests and index names against what was expected; TTL indexes only when
    `ttl` (they are built after this check)."""
    def read_back(info: CollectionSpec) -> tuple[CollectionDigest, set[str]]:
        d = CollectionDigest()
        for batch in mongo.raw_batches(client, info.db, info.name):
            d.update(batch)
        return d, mongo.index_names(client, info.db, info.name)

    digests: dict[tuple[str, str], CollectionDigest] = {}
    problems: list[str] = []
    colls = [i for i in plan.namespaces if i.type == "collection"]
    # read back in parallel, as the dump reads: the server, not us, is the bottleneck
    with ThreadPoolExecutor(INSERT_WORKERS) as pool:
        for info, (d, have) in zip(colls, pool.map(read_back, colls)):
            digests[(info.db, info.name)] = d
            want = {i.get("name") for i in info.indexes if ttl or not mongo.is_ttl(i)}
            if want - have:
                problems.append(f"{info.db}.{info.name}: index(es) missing: {', '.join(sorted(want - have))}")
    problems += integrity.compare(expected, digests, "the target", {i.db for i in plan.namespaces})
    if problems:
        raise IntegrityError("restore verification failed: " + "; ".join(problems[:5]))
    reporter.info(f"verified: {sum(d.count for d in digests.values())} documents in {len(digests)} "
                  f"collections match the backup")


def run(opts: RestoreOptions, reporter: Reporter) -> dict:
    if opts.keyring is None:        # front ends that do not pass keys (the helm plugin): the environment's
        from .keys import from_env
        opts.keyring = from_env()
    client = mongo_client.connect(opts.mongodb_url)
    target_bucket = bucket_store(opts.artifacts_bucket) if opts.artifacts_bucket else None
    if target_bucket:
        target_bucket.check()
    store, key, manifest, scanned = _open_archive(opts, reporter)

    # the prelude: cheap to read again, and the only source for vendor archives
    with contextlib.closing(_read(store, key, manifest, opts.keyring)) as f:
        _, plain = compression.decompressor(f)
        prelude = ArchiveReader(plain).prelude
    infos = [CollectionSpec.from_json(cm.db, cm.collection, cm.metadata, cm.type) for cm in prelude.collections]
    if manifest:
        counts = {(db, c): e.count for db, colls in manifest.databases.items() for c, e in colls.items()}
    else:
        counts = {k: d.count for k, d in scanned.digests.items()}
    expected = (integrity.expected_from_manifest(manifest) if manifest
                else integrity.expected_from_digests(scanned.digests))
    infos = _renamed(opts.db_prefix, infos, counts, expected)
    plan = _plan(client, infos, counts, dataclasses.replace(
        opts, databases=[opts.db_prefix + d for d in opts.databases]))
    secrets = _plan_secrets(opts, store, manifest)   # proven and checked before anything is written

    if target_bucket and manifest:
        target = artifacts.inventory(target_bucket)
        plan.artifacts = artifacts.restore_plan(manifest.artifacts, target, opts.drop)
    elif manifest and manifest.artifacts and not target_bucket and not opts.skip_artifacts:
        reporter.warn(f"backup holds {len(manifest.artifacts)} artifact(s) but no --artifacts-bucket was "
                      f"given: restoring the databases only")

    summary = {"backup": manifest.id if manifest else key, "dry_run": opts.dry_run, **plan.describe()}
    if secrets:
        summary["secrets"] = {"namespace": secrets[2], "actions": secrets[1]}
    if opts.dry_run:
        return summary

    for (db, c), n in sorted(plan.to_drop.items()):
        reporter.info(f"dropping {db}.{c} ({n} documents)")
        client[db].drop_collection(c)
    existing = mongo.existing_counts(client, [(i.db, i.name) for i in plan.namespaces])
    for info in plan.namespaces:
        if (info.db, info.name) not in existing:
            mongo.create(client, info)
    wanted = {(i.db, i.name) for i in plan.namespaces if i.type == "collection"}
    with contextlib.closing(_read(store, key, manifest, opts.keyring)) as f:
        _insert_all(client, f, wanted, reporter, sum(plan.counts.values()), opts.db_prefix)
    colls = [i for i in plan.namespaces if i.type == "collection"]
    for info in colls:
        mongo.create_indexes(client, info, ttl=False)

    if plan.artifacts is not None and plan.artifacts.to_copy:
        artifacts.copy(store, ARTIFACTS, target_bucket, "", plan.artifacts.to_copy, reporter,
                       "restoring artifacts")

    # TTL indexes only after the comparison: the server's TTL monitor deletes expired
    # documents within a minute of their build, and would race the count
    _verify_target(client, plan, expected, reporter, ttl=False)
    if target_bucket and manifest:
        bad = artifacts.check_complete(manifest.artifacts, artifacts.inventory(target_bucket))
        if bad:
            raise IntegrityError(f"restore verification failed: {len(bad)} artifact(s) missing or of the "
                                 f"wrong size in {target_bucket} (e.g. {bad[0]})")
    if secrets:
        bundle, actions, ns, kube = secrets
        mender_secrets.apply(kube, ns, bundle, actions, manifest.id)
        reporter.info(f"Mender secrets: {', '.join(f'{n} {a}' for n, a in actions.items())} (namespace {ns})")
    summary["expired"] = _build_ttl_indexes(client, colls, reporter)
    summary["verified"] = True
    return summary


def _plan_secrets(opts: RestoreOptions, store, manifest):
    """-> (bundle, name -> action, namespace, kube) or None when not asked for."""
    if not opts.secrets:
        return None
    if manifest is None:
        raise UsageError("--secrets needs a backup (a plain mongodump archive holds no Secrets)")
    from ..kube.connection import Kube
    bundle = mender_secrets.load(store, manifest, opts.keyring)
    kube = Kube.from_env()
    ns = opts.secrets_namespace or bundle.namespace
    return bundle, mender_secrets.plan(kube, ns, bundle, opts.overwrite_secrets), ns, kube


def _build_ttl_indexes(client, colls: list[CollectionSpec], reporter: Reporter) -> dict[str, int]:
    """Build the TTL indexes, checked like the others; returns the documents already expired
    per namespace (verified restored, and about to be deleted by the server, as Mender expects)."""
    now = datetime.now(timezone.utc)
    expired: dict[str, int] = {}
    for info in colls:
        built = mongo.create_indexes(client, info, ttl=True)
        if not built:
            continue
        missing = set(built) - mongo.index_names(client, info.db, info.name)
        if missing:
            raise IntegrityError(f"restore verification failed: {info.namespace}: index(es) missing: "
                                 f"{', '.join(sorted(missing))}")
        n = mongo.expired(client, info, now)
        if n:
            expired[info.namespace] = n
            reporter.info(f"{info.namespace}: {n} restored document(s) are past their TTL: MongoDB's TTL "
                          f"monitor deletes them within a minute", namespace=info.namespace, expired=n)
    return expired


def describe(s: dict) -> str:
    """The result of `run`, for people."""
    lines = [f"{'plan for' if s['dry_run'] else 'restored'} {s['backup']}:"]
    for d in s["drop"]:
        lines.append(f"  drop    {d['namespace']} ({d['documents']} documents)")
    for c in s["create"]:
        lines.append(f"  create  {c['namespace']} ({c['documents']} documents, "
                     f"{len(c['indexes'])} indexes)")
    for u in s["untouched"]:
        lines.append(f"  keep    {u} (not in the backup, left alone)")
    a = s["artifacts"]
    if a is not None:
        lines.append(f"  artifacts: copy {a['copy']} ({human_bytes(a['bytes'])}), {a['already_present']} already present")
    for name, action in (s.get("secrets") or {}).get("actions", {}).items():
        lines.append(f"  secret  {s['secrets']['namespace']}/{name}: {action}")
    if s["dry_run"]:
        lines.append("dry run: nothing was changed")
    else:
        lines.append("verified: counts and content digests match the backup")
        for ns, n in sorted((s.get("expired") or {}).items()):
            lines.append(f"  expired {ns}: {n} documents past their TTL (restored and verified; MongoDB's "
                         f"TTL monitor deletes them within a minute)")
    return "\n".join(lines)
