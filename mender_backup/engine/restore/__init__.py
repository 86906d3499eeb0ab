"""`mender-backup restore`: a backup (or a plain mongodump archive, or a point in time) back into
MongoDB and a bucket. What is read is a Source (source.py); what changes on the target, a
Plan (plan.py); the oplog, replay.py; the result for people, summary.py.

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
from dataclasses import dataclass

from ...errors import IntegrityError, UsageError
from ...format import compression
from ...format.archive import ArchiveReader, iter_documents
from ...format.layout import ARTIFACTS
from ...mongo import client as mongo_client
from ...mongo import users as mongo_users
from ...output import Reporter
from ...stores import bucket_store
from .. import artifacts, mender_secrets, namespaces
from ..replay.commands import IndexCatalog
from ..load import VERIFY_LEVELS, Loader
from . import replay
from .options import RestoreOptions
from ..tenant_storage import parse_map
from . import tenant_stores
from .plan import Plan, create_collections, plan_target, prefixed
from .source import Source, resolve
from .summary import describe

__all__ = ["RestoreOptions", "describe", "run"]


def run(opts: RestoreOptions, reporter: Reporter) -> dict:
    if opts.keyring is None:        # front ends that do not pass keys (the helm plugin): the environment's
        from ..keys import from_env
        opts = dataclasses.replace(opts, keyring=from_env(opts.settings.environ))    # the caller's stay as they are
    if opts.db_prefix and opts.to_time:
        raise UsageError("a test restore (scratch databases) restores a backup, not a point in time")
    if opts.verify not in VERIFY_LEVELS:
        raise UsageError(f"--verify {opts.verify}: choose one of {', '.join(VERIFY_LEVELS)}")
    client = mongo_client.connect(opts.mongodb_url)
    target_bucket = bucket_store(opts.artifacts_bucket, opts.settings.source_store) if opts.artifacts_bucket else None
    if target_bucket:
        target_bucket.check()
    with contextlib.ExitStack() as stack:
        source = resolve(opts, reporter)
        source.prove(stack)            # before anything is written
        prepared = _prepare(opts, reporter, client, target_bucket, source)
        if opts.dry_run:
            prepared.summary["oplog"]["replayed"] = replay.replay(None, prepared.replay, None, reporter)
            return prepared.summary
        return _write(opts, reporter, client, target_bucket, source, prepared, stack)


@dataclass
class _Prepared:
    """Everything decided before the first write."""
    plan: Plan
    summary: dict
    replay: replay.Job
    secrets: tuple | None


def _prepare(opts: RestoreOptions, reporter: Reporter, client, target_bucket, source: Source) -> _Prepared:
    """The plan, from the proven source and the target as it is: refusals, never a write."""
    manifest = source.manifest
    # the prelude: cheap to read again, and the only source for vendor archives
    with contextlib.closing(source.open()) as f:
        _, plain = compression.decompressor(f)
        prelude = ArchiveReader(plain).prelude
    sel = namespaces.select(prelude, opts.databases, opts.users_and_roles)
    if opts.users_and_roles:
        mongo_users.check_supported(client)
    by_spec = {(db, c.removeprefix(namespaces.BUCKETS)): n for (db, c), n in source.counts().items()}
    prefixed(opts.db_prefix, sel, by_spec)
    plan = plan_target(client, sel.specs, by_spec, opts.drop)
    plan.selection = sel
    # a test restore checks the archive's documents in scratch databases: its oplog (which
    # names the real ones) is not replayed there
    plan.oplog = replay.plan(dataclasses.replace(opts, oplog_replay=False) if opts.db_prefix else opts,
                             manifest, sel, source.point)
    if opts.to_time:
        plan.oplog["to_time"] = opts.to_time
    secrets = _plan_secrets(opts, source)   # proven and checked before anything is written

    if opts.tenant_storage_map and not target_bucket:
        raise UsageError("--tenant-storage-map moves artifacts: give --artifacts-bucket too")
    if target_bucket and manifest:
        plan.artifacts = artifacts.restore_plan(manifest.artifacts_of(), artifacts.inventory(target_bucket), opts.drop)
        plan.tenant_stores = tenant_stores.plan(manifest, source.open, parse_map(opts.tenant_storage_map),
                                                opts.drop, sel.data)
    elif manifest and manifest.artifacts and not target_bucket and not opts.skip_artifacts:
        reporter.warn(f"backup holds {len(manifest.artifacts)} artifact(s) but no --artifacts-bucket was "
                      f"given: restoring the databases only")

    summary = {"backup": source.label, "dry_run": opts.dry_run, "verify": opts.verify, **plan.describe()}
    if secrets:
        summary["secrets"] = {"namespace": secrets[2], "actions": secrets[1]}
    catalog_ = IndexCatalog()
    for info in plan.namespaces:
        if info.type != "view":
            catalog_.add_collection(info.db, info.name, info.indexes)
    return _Prepared(plan, summary, replay.job(opts, source, plan.oplog, catalog_), secrets)


def _write(opts: RestoreOptions, reporter: Reporter, client, target_bucket, source: Source, p: _Prepared,
           stack: contextlib.ExitStack) -> dict:
    """Create, load and check, replay, build the indexes, copy the artifacts and Secrets."""
    plan, summary, manifest = p.plan, p.summary, source.manifest
    create_collections(client, plan, reporter)
    spool = stack.enter_context(tempfile.TemporaryFile(prefix="mender-backup-oplog-"))
    auth: dict[str, list] = {kind: [] for kind in plan.selection.auth}
    side = {namespaces.OPLOG: spool.write}
    for kind, ns in plan.selection.auth.items():
        side[ns] = lambda data, k=kind: auth[k].extend(_raw_docs(data))
    # documents checked before the oplog moves anything; indexes after the replay (all of
    # them at once), or, with nothing to replay, each collection's right after its check
    loader = Loader(client, plan.selection.data, source.expected(), opts.verify, p.replay.catalog,
                    not plan.oplog.get("replay"), reporter)
    with contextlib.closing(source.open()) as f:
        verification = loader.run(f, side, sum(plan.counts.values()))
    loader.report()
    if auth:
        summary["users_and_roles"] = mongo_users.merge(client, auth, opts.drop)
    summary["oplog"]["replayed"] = replay.replay(client, p.replay, spool, reporter)
    summary["expired"] = loader.build_indexes()

    if plan.artifacts is not None and plan.artifacts.to_copy:
        artifacts.copy(source.store, ARTIFACTS, target_bucket, "", plan.artifacts.to_copy, reporter,
                       "restoring artifacts")
    tenant_stores.write(client, plan.tenant_stores, source.store, reporter)
    if target_bucket and manifest:
        bad = artifacts.check_complete(manifest.artifacts_of(), artifacts.inventory(target_bucket))
        if bad:
            raise IntegrityError(f"restore verification failed: {len(bad)} artifact(s) missing or of the "
                                 f"wrong size in {target_bucket} (e.g. {bad[0]})")
    if p.secrets:
        bundle, actions, ns, kube = p.secrets
        mender_secrets.apply(kube, ns, bundle, actions, manifest.id)
        reporter.info(f"Mender secrets: {', '.join(f'{n} {a}' for n, a in actions.items())} (namespace {ns})")
    verification.require()      # every planned collection's check completed, or IntegrityError
    summary["verified"] = True
    return summary


def _plan_secrets(opts: RestoreOptions, source: Source):
    """-> (bundle, name -> action, namespace, kube) or None when not asked for."""
    if not opts.secrets:
        return None
    if source.manifest is None:
        raise UsageError("--secrets needs a backup (a plain mongodump archive holds no Secrets)")
    from ...kube.connection import Kube
    bundle = mender_secrets.load(source.store, source.manifest, opts.keyring)
    kube = Kube.from_env(opts.settings.environ)
    ns = opts.secrets_namespace or bundle.namespace
    return bundle, mender_secrets.plan(kube, ns, bundle, opts.overwrite_secrets), ns, kube


def _raw_docs(data: bytes) -> list:
    from bson.raw_bson import RawBSONDocument
    return [RawBSONDocument(bytes(d)) for d in iter_documents(data)]
