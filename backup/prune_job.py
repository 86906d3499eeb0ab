"""`mender-backup prune`: apply a retention policy, then remove what nothing references.

Under the destination's lock (a running backup copies artifacts before its
manifest exists; without the lock prune could delete them). A backup is deleted
manifest first, so an interrupted prune leaves an incomplete backup, never one
that claims to be complete and is not.
"""

from __future__ import annotations

from datetime import datetime, timezone

from . import catalog
from .errors import UsageError
from .manifest import MANIFEST
from .output import Reporter
from .retention import Policy, keep
from .store import S3Store, Store

INCOMPLETE_GRACE_SECONDS = 3600     # an incomplete backup younger than this may still be running


def prune_locked(store: Store, policy: Policy, reporter: Reporter, dry_run: bool) -> dict:
    if policy.empty:
        raise UsageError("no retention policy given (--keep-last/--keep-daily/--keep-weekly/--keep-monthly): "
                         "refusing to prune everything")
    entries = catalog.scan(store)
    complete = {e.id: e.time or datetime.fromtimestamp(0, timezone.utc) for e in entries if e.complete}
    reasons = keep(complete, policy)
    now = datetime.now(timezone.utc)
    doomed = [e for e in entries if e.complete and e.id not in reasons]
    stale = [e for e in entries if not e.complete and e.time is not None
             and (now - e.time).total_seconds() > INCOMPLETE_GRACE_SECONDS]
    kept_manifests = [e.manifest for e in entries if e.complete and e.id in reasons]
    referenced = {a.key for m in kept_manifests for a in m.artifacts}
    stored = {o.key[len(catalog.ARTIFACTS):]: o.size for o in store.list(catalog.ARTIFACTS)}
    orphans = sorted(k for k in stored if k not in referenced)

    result = {
        "dry_run": dry_run,
        "keep": {bid: rules for bid, rules in sorted(reasons.items())},
        "delete": [e.id for e in doomed],
        "delete_incomplete": [e.id for e in stale],
        "delete_artifacts": len(orphans),
        "delete_artifact_bytes": sum(stored[k] for k in orphans),
    }
    verb = "would delete" if dry_run else "deleting"
    reporter.info(f"prune: keeping {len(reasons)} backup(s), {verb} {len(doomed)} backup(s), "
                  f"{len(stale)} incomplete backup(s) and {len(orphans)} unreferenced artifact(s)")
    if dry_run:
        return result
    for e in doomed + stale:
        store.delete([catalog.backup_key(e.id, MANIFEST)])          # first: no longer "complete"
        store.delete([o.key for o in store.list(f"{catalog.BACKUPS}{e.id}/")])
    store.delete([catalog.ARTIFACTS + k for k in orphans])
    if isinstance(store, S3Store):
        store.abort_stale_uploads()
    return result


def run(store: Store, policy: Policy, reporter: Reporter, dry_run: bool, break_lock: bool = False) -> dict:
    if policy.empty:
        prune_locked(store, policy, reporter, dry_run)    # raises the clear error
    store.check()
    if dry_run:   # changes nothing, so it needs no lock
        return prune_locked(store, policy, reporter, dry_run=True)
    with catalog.Lock(store, "prune") as lock:
        lock.acquire(break_lock)
        return prune_locked(store, policy, reporter, dry_run=False)
