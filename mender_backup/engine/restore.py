"""`mender-backup restore`: a backup (or a plain mongodump archive) back into MongoDB and a bucket.

Order of work, each step only when the one before succeeded:
 1. prove the archive intact before touching anything: sha256 against the
    manifest and, in the same read, a full parse (decompression, CRCs) compared with the
    manifest (every collection it lists there and no other, counts and digests:
    integrity.check_plan), or, for a vendor archive without manifest, the full parse; a
    remote archive is copied to a local temporary file in that same read;
 2. plan: refuse a target database that holds data unless --drop; --dry-run
    prints the plan and stops;
 3. drop (only the collections the backup holds), create with options (time-series
    collections first: a server that cannot create one fails the restore before it
    has changed anything), insert;
 4. read the documents back and compare counts and digests with the manifest (--verify
    counts: the server's counts only), each collection as soon as its inserts are
    acknowledged, while others still insert (engine/load.py);
 5. replay the oplog (a consistent backup's own, then the slices up to --to-time):
    after the documents, before the indexes, as mongorestore does;
 6. build the indexes (as the oplog left the catalog; with nothing to replay, each
    collection's right after its check), check them, copy artifacts. TTL indexes come
    after the count check too: the server's TTL monitor deletes expired documents within
    a minute of their build; those already expired are reported.
Namespaces mongorestore would not restore (system databases, `system.*`, users and
roles without --restore-users-and-roles) are skipped and listed (engine/namespaces.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from dataclasses import dataclass, field

from pymongo import errors as perr

from ..errors import ConflictError, IntegrityError, MenderBackupError, UsageError
from ..format import compression
from ..format.archive import ArchiveReader, iter_documents
from ..format.encryption import Keyring
from ..format.layout import ARTIFACTS, backup_key
from ..format.metadata import CollectionSpec
from ..format.oplog import parse_time
from ..mongo import client as mongo_client
from ..mongo import collections as mongo
from ..mongo import users as mongo_users
from ..output import Reporter, human_bytes
from ..stores import bucket_store, destination_store, split_object_url
from . import artifacts, catalog, integrity, mender_secrets, namespaces, pitr, restore_oplog
from .commands import IndexCatalog
from .load import VERIFY_LEVELS, Loader
from .repository import Repository



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
    oplog_replay: bool | None = None       # None: replay a consistent backup's oplog, not a vendor archive's
    to_time: str | None = None             # replay oplog slices up to this time (point-in-time recovery)
    users_and_roles: bool = False          # admin.system.users/roles, as mongorestore merges them
    keyring: Keyring | None = None         # for encrypted backups
    secrets: bool = False                  # also put Mender's key Secrets back (Kubernetes API)
    overwrite_secrets: bool = False        # replace live Secrets that hold other keys
    secrets_namespace: str = ""            # default: the namespace they were read from
    db_prefix: str = ""                    # restore database X as <prefix>X (verify --restore-into)
    skip_artifacts: bool = False           # databases only, on purpose (no warning)
    verify: str = "full"                   # full: read every document back; counts: the server's counts only


@dataclass
class Plan:
    namespaces: list[CollectionSpec]
    counts: dict[tuple[str, str], int]                 # expected documents per namespace
    to_drop: dict[tuple[str, str], int]                # existing collections that --drop replaces
    kept: dict[str, list[str]]                         # other collections in target dbs, untouched
    artifacts: artifacts.CopyPlan | None = None
    selection: namespaces.Selection = field(default_factory=namespaces.Selection)
    oplog: dict = field(default_factory=dict)          # what happens to the oplog (replayed or not, why)

    def describe(self) -> dict:
        return {
            "skipped": self.selection.describe_skipped(),
            "oplog": self.oplog,
            "drop": [{"namespace": f"{db}.{c}", "documents": n} for (db, c), n in sorted(self.to_drop.items())],
            "create": [{"namespace": f"{i.db}.{i.name}", "type": i.type,
                        "documents": self.counts.get((i.db, i.name), 0),
                        "indexes": sorted(x.get("name", "") for x in i.indexes)} for i in self.namespaces],
            "untouched": [f"{db}.{c}" for db, cs in sorted(self.kept.items()) for c in cs],
            "artifacts": None if self.artifacts is None else {
                "copy": len(self.artifacts.to_copy), "bytes": self.artifacts.bytes,
                "already_present": self.artifacts.present},
        }


def _open_archive(opts: RestoreOptions, reporter: Reporter, stack: contextlib.ExitStack):
    """-> (store, key, manifest or None, the archive scan for vendor archives, the --to-time plan,
    a function that opens the proven archive's bytes as stored). Before anything is written
    the archive is proven intact, in one read that also leaves a local copy of a remote one
    (so a restore from S3 reads it once)."""
    if opts.archive:
        if opts.backup_id or opts.to_time:
            raise UsageError("give either a backup id (or --to-time) or --archive, not both")
        store, key = split_object_url(opts.archive)
        opener, first = stack.enter_context(integrity.vendor_copy(store, key, reporter))
        with contextlib.closing(first) as f:
            contents = integrity.scan_archive(f, reporter, f"checking {key}")
        return store, key, None, contents, None, opener
    if not opts.backup_id and not opts.to_time:
        raise UsageError("no backup id given (an id from `mender-backup list`, `latest`, --to-time TIME or "
                         "--archive URL)")
    store = destination_store(opts.source or "")
    manifest = catalog.resolve(store, opts.backup_id) if opts.backup_id else None
    point = _point_in_time(store, opts, manifest)
    manifest = point.manifest if point else manifest
    opener = stack.enter_context(integrity.local_copy(store, manifest, reporter, opts.keyring))
    return store, backup_key(manifest.id, manifest.archive.key), manifest, None, point, opener


def _read(store, manifest, keyring: Keyring | None, opener):
    """The archive's compressed bytes (decrypted, and authenticated again, when encrypted)."""
    return integrity.open_archive(store, manifest, keyring, opener) if manifest else opener()


def _prefixed(prefix: str, sel: namespaces.Selection, *keyed: dict) -> None:
    """Databases X into <prefix>X (a test restore's scratch databases): the selection's specs
    and targets, and (in place) every dict keyed by target (db, name)."""
    if not prefix:
        return
    sel.specs = [dataclasses.replace(i, db=prefix + i.db) for i in sel.specs]
    sel.data = {src: (prefix + db, c) for src, (db, c) in sel.data.items()}
    for d in keyed:
        for (db, c) in list(d):
            d[(prefix + db, c)] = d.pop((db, c))


def _point_in_time(store, opts: RestoreOptions, manifest) -> pitr.Plan | None:
    """With --to-time: the base backup and the slices up to that time (refusals before any write)."""
    if not opts.to_time:
        return None
    when, ts = parse_time(opts.to_time)
    repo = Repository(store)
    cat, slices = repo.backups(), repo.slices()
    slices.require_readable(f"cannot plan a restore to {opts.to_time}")
    if cat.read_errors and not manifest:
        raise MenderBackupError(f"cannot choose the base of a restore to {opts.to_time}: backup "
                                f"{cat.read_errors[0].id}'s {cat.read_errors[0].problem}")
    backups = [e.manifest for e in cat.complete]
    return pitr.choose(backups, slices.valid, pitr.Target(when, ts), manifest.id if manifest else None)


def _plan(client, wanted: list[CollectionSpec], counts, opts: RestoreOptions) -> Plan:
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


def _create_collections(client, plan: Plan, reporter: Reporter) -> None:
    """Time-series collections first, before anything else changes: the one thing a
    compatible server may refuse (FerretDB, DocumentDB) is refused on an untouched target."""
    existing = mongo.existing_counts(client, [(i.db, i.name) for i in plan.namespaces])
    new_ts = [i for i in plan.namespaces if i.type == "timeseries" and (i.db, i.name) not in existing]
    made = []
    for info in new_ts:
        try:
            mongo.create(client, info)
        except perr.OperationFailure as exc:
            for m in made:
                client[m.db].drop_collection(m.name)
            raise MenderBackupError(f"the target server cannot create the time-series collection "
                                    f"{info.namespace}: {exc.details.get('errmsg', exc) if exc.details else exc}"
                                    ) from None
        made.append(info)
    for (db, c), n in sorted(plan.to_drop.items()):
        reporter.info(f"dropping {db}.{c} ({n} documents)")
        client[db].drop_collection(c)
    existing = mongo.existing_counts(client, [(i.db, i.name) for i in plan.namespaces])
    try:
        for info in plan.namespaces:
            if (info.db, info.name) not in existing:
                mongo.create(client, info)
                made.append(info)
    except Exception:
        # options the server refuses (the archive's metadata): leave no half-made target behind
        for m in reversed(made):
            with contextlib.suppress(perr.PyMongoError):
                client[m.db].drop_collection(m.name)
        raise


def run(opts: RestoreOptions, reporter: Reporter) -> dict:
    if opts.keyring is None:        # front ends that do not pass keys (the helm plugin): the environment's
        from .keys import from_env
        opts.keyring = from_env()
    if opts.db_prefix and opts.to_time:
        raise UsageError("a test restore (scratch databases) restores a backup, not a point in time")
    if opts.verify not in VERIFY_LEVELS:
        raise UsageError(f"--verify {opts.verify}: choose one of {', '.join(VERIFY_LEVELS)}")
    client = mongo_client.connect(opts.mongodb_url)
    target_bucket = bucket_store(opts.artifacts_bucket) if opts.artifacts_bucket else None
    if target_bucket:
        target_bucket.check()
    with contextlib.ExitStack() as stack:
        summary = _restore(opts, reporter, client, target_bucket, stack)
    return summary


def _restore(opts: RestoreOptions, reporter: Reporter, client, target_bucket, stack: contextlib.ExitStack) -> dict:
    store, key, manifest, scanned, point, opener = _open_archive(opts, reporter, stack)
    read_archive = lambda: _read(store, manifest, opts.keyring, opener)  # noqa: E731

    # the prelude: cheap to read again, and the only source for vendor archives
    with contextlib.closing(read_archive()) as f:
        _, plain = compression.decompressor(f)
        prelude = ArchiveReader(plain).prelude
    sel = namespaces.select(prelude, opts.databases, opts.users_and_roles)
    if opts.users_and_roles:
        mongo_users.check_supported(client)
    if manifest:
        found = {(db, c): e.count for db, colls in manifest.databases.items() for c, e in colls.items()}
    else:
        found = {k: d.count for k, d in scanned.digests.items()}
    by_spec = {(db, c.removeprefix(namespaces.BUCKETS)): n for (db, c), n in found.items()}
    _prefixed(opts.db_prefix, sel, by_spec)
    plan = _plan(client, sel.specs, by_spec, dataclasses.replace(
        opts, databases=[opts.db_prefix + d for d in opts.databases]))
    plan.selection = sel
    # a test restore checks the archive's documents in scratch databases: its oplog (which
    # names the real ones) is not replayed there
    plan.oplog = restore_oplog.plan(dataclasses.replace(opts, oplog_replay=False) if opts.db_prefix else opts,
                                    manifest, sel, point)
    if opts.to_time:
        plan.oplog["to_time"] = opts.to_time
    secrets = _plan_secrets(opts, store, manifest)   # proven and checked before anything is written

    if target_bucket and manifest:
        target = artifacts.inventory(target_bucket)
        plan.artifacts = artifacts.restore_plan(manifest.artifacts, target, opts.drop)
    elif manifest and manifest.artifacts and not target_bucket and not opts.skip_artifacts:
        reporter.warn(f"backup holds {len(manifest.artifacts)} artifact(s) but no --artifacts-bucket was "
                      f"given: restoring the databases only")

    summary = {"backup": manifest.id if manifest else key, "dry_run": opts.dry_run, "verify": opts.verify,
               **plan.describe()}
    if secrets:
        summary["secrets"] = {"namespace": secrets[2], "actions": secrets[1]}
    catalog_ = IndexCatalog()
    for info in plan.namespaces:
        if info.type != "view":
            catalog_.add_collection(info.db, info.name, info.indexes)
    # slices are fetched and checked before the target is touched
    slices = stack.enter_context(pitr.fetched(store, point, reporter, opts.keyring)) if point else []
    if opts.dry_run:
        summary["oplog"]["replayed"] = restore_oplog.replay(
            None, read_archive, plan.oplog, catalog_, opts, point, slices, None, reporter)
        return summary

    _create_collections(client, plan, reporter)
    spool = stack.enter_context(tempfile.TemporaryFile(prefix="mender-backup-oplog-"))
    auth: dict[str, list] = {kind: [] for kind in sel.auth}
    side = {namespaces.OPLOG: spool.write}
    for kind, ns in sel.auth.items():
        side[ns] = lambda data, k=kind: auth[k].extend(_raw_docs(data))
    expected = (integrity.expected_from_manifest(manifest) if manifest
                else integrity.expected_from_digests(scanned.digests))
    # documents checked before the oplog moves anything; indexes after the replay (all of
    # them at once), or, with nothing to replay, each collection's right after its check
    loader = Loader(client, sel.data, expected, opts.verify, catalog_, not plan.oplog.get("replay"), reporter)
    with contextlib.closing(read_archive()) as f:
        verification = loader.run(f, side, sum(plan.counts.values()))
    loader.report()
    if auth:
        summary["users_and_roles"] = mongo_users.merge(client, auth, opts.drop)
    summary["oplog"]["replayed"] = restore_oplog.replay(
        client, read_archive, plan.oplog, catalog_, opts, point, slices, spool, reporter)
    summary["expired"] = loader.build_indexes()

    if plan.artifacts is not None and plan.artifacts.to_copy:
        artifacts.copy(store, ARTIFACTS, target_bucket, "", plan.artifacts.to_copy, reporter,
                       "restoring artifacts")
    if target_bucket and manifest:
        bad = artifacts.check_complete(manifest.artifacts, artifacts.inventory(target_bucket))
        if bad:
            raise IntegrityError(f"restore verification failed: {len(bad)} artifact(s) missing or of the "
                                 f"wrong size in {target_bucket} (e.g. {bad[0]})")
    if secrets:
        bundle, actions, ns, kube = secrets
        mender_secrets.apply(kube, ns, bundle, actions, manifest.id)
        reporter.info(f"Mender secrets: {', '.join(f'{n} {a}' for n, a in actions.items())} (namespace {ns})")
    verification.require()      # every planned collection's check completed, or IntegrityError
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


def _raw_docs(data: bytes) -> list:
    from bson.raw_bson import RawBSONDocument
    return [RawBSONDocument(bytes(d)) for d in iter_documents(data)]


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
    for k in s.get("skipped", []):
        lines.append(f"  skip    {k['namespace']} ({k['reason']})")
    lines += _describe_oplog(s.get("oplog") or {}, s["dry_run"])
    a = s["artifacts"]
    if a is not None:
        lines.append(f"  artifacts: copy {a['copy']} ({human_bytes(a['bytes'])}), {a['already_present']} already present")
    for name, action in (s.get("secrets") or {}).get("actions", {}).items():
        lines.append(f"  secret  {s['secrets']['namespace']}/{name}: {action}")
    if s["dry_run"]:
        lines.append("dry run: nothing was changed")
    else:
        lines.append("verified: counts and content digests match the backup" if s.get("verify", "full") == "full"
                     else "verified: counts match the backup (--verify counts: contents not read back)")
        for ns, n in sorted((s.get("expired") or {}).items()):
            lines.append(f"  expired {ns}: {n} documents past their TTL (restored and verified; MongoDB's "
                         f"TTL monitor deletes them within a minute)")
    return "\n".join(lines)


def _describe_oplog(o: dict, dry_run: bool) -> list[str]:
    if not o.get("in_archive") and not o.get("slices"):
        return []
    if not o.get("replay"):
        return [f"  oplog   {o.get('reason', 'not replayed')}"]
    r = o.get("replayed") or {}
    verb = "replay" if dry_run else "replayed"
    where = f" up to {r['last']['time']}" if r.get("last") else ""
    lines = [f"  oplog   {verb} {r.get('entries', 0)} entries{where}"
             + (f" from the archive and {len(o['slices'])} slice(s)" if o.get("slices") else "")]
    for why, n in sorted((r.get("skipped") or {}).items()):
        lines.append(f"  oplog   skip {n} ({why})")
    return lines
