"""`mender-backup prune`: apply a retention policy, then remove what nothing references.

Under the destination's lock (a running backup copies artifacts before its
manifest exists; without the lock prune could delete them). A backup is deleted
manifest first, so an interrupted prune leaves an incomplete backup, never one
that claims to be complete and is not. Oplog slices go when they end before the
consistency point of the oldest backup kept (no restore can use them).
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..errors import UsageError
from ..format.layout import ARTIFACTS, MANIFEST, backup_key, backup_prefix
from ..output import Reporter
from ..stores import Store
from . import catalog, pitr
from .lock import Lock
from .retention import Policy, keep

INCOMPLETE_GRACE_SECONDS = 3600     # an incomplete backup younger than this may still be running


def _plan(store: Store, policy: Policy, dry_run: bool) -> tuple[dict, list[str], list[str], list[pitr.Slice]]:
    """-> (the result document, backup ids to delete, artifact keys to delete, oplog slices to delete)"""
    entries = catalog.scan(store)
    complete = {e.id: e.time or datetime.fromtimestamp(0, timezone.utc) for e in entries if e.complete}
    reasons = keep(complete, policy)
    # the newest backup a test restore passed is never deleted, whatever the policy says
    verified = [e for e in entries if e.passed_verification]
    if verified:
        reasons.setdefault(verified[-1].id, []).append("newest verified")
    now = datetime.now(timezone.utc)
    doomed = [e.id for e in entries if e.complete and e.id not in reasons]
    stale = [e.id for e in entries if not e.complete and e.time is not None
             and (now - e.time).total_seconds() > INCOMPLETE_GRACE_SECONDS]
    referenced = {a.key for e in entries if e.complete and e.id in reasons for a in e.manifest.artifacts}
    stored = {o.key[len(ARTIFACTS):]: o.size for o in store.list(ARTIFACTS)}
    orphans = sorted(k for k in stored if k not in referenced)
    old_slices = _unneeded_slices(store, [e.manifest for e in entries if e.complete and e.id in reasons])
    result = {
        "dry_run": dry_run,
        "keep": {bid: rules for bid, rules in sorted(reasons.items())},
        "delete": doomed,
        "delete_incomplete": stale,
        "delete_artifacts": len(orphans),
        "delete_artifact_bytes": sum(stored[k] for k in orphans),
        "delete_oplog_slices": [s.name for s in old_slices],
    }
    return result, doomed + stale, orphans, old_slices


def _unneeded_slices(store: Store, kept) -> list[pitr.Slice]:
    """Slices that end before the consistency point of the oldest backup kept: no restore
    can use them. Never the newest slice (the next `mender-backup oplog` continues from it),
    and none when no kept backup is point-in-time consistent (nothing tells which are needed)."""
    ends = [m.point_in_time.end for m in kept if m.point_in_time and m.point_in_time.end]
    slices = pitr.scan(store)
    if not ends or not slices:
        return []
    oldest, newest = min(ends), max(slices, key=lambda s: s.last)
    return [s for s in slices if s.last < oldest and s is not newest]


def run(store: Store, policy: Policy, reporter: Reporter, dry_run: bool, break_lock: bool = False) -> dict:
    if policy.empty:
        raise UsageError("no retention policy given (--keep-last/--keep-daily/--keep-weekly/--keep-monthly): "
                         "refusing to prune everything")
    store.check()
    if dry_run:   # changes nothing, so it needs no lock
        return _report(_plan(store, policy, True)[0], reporter)
    with Lock(store, "prune") as lock:
        lock.acquire(break_lock, reporter.warn)
        result, backups, orphans, slices = _plan(store, policy, False)
        _report(result, reporter)
        for bid in backups:
            lock.ensure_held()
            store.delete([backup_key(bid, MANIFEST)])          # first: no longer "complete"
            store.delete([o.key for o in store.list(backup_prefix(bid))])
        lock.ensure_held()
        store.delete([ARTIFACTS + k for k in orphans])
        for sl in slices:                                      # manifest first, as backups
            store.delete([sl.manifest_key])
            store.delete([sl.data_key])
        store.abort_unfinished_writes()
    return result


def _report(result: dict, reporter: Reporter) -> dict:
    verb = "would delete" if result["dry_run"] else "deleting"
    reporter.info(f"prune: keeping {len(result['keep'])} backup(s), {verb} {len(result['delete'])} backup(s), "
                  f"{len(result['delete_incomplete'])} incomplete backup(s), {result['delete_artifacts']} "
                  f"unreferenced artifact(s) and {len(result['delete_oplog_slices'])} oplog slice(s) no kept "
                  f"backup needs")
    return result
