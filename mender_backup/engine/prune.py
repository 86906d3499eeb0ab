"""`mender-backup prune`: apply a retention policy, then remove what nothing references.

Prune only deletes what it has proven it may (docs/FORMAT.md, "Deletion rule"):
- it decides on a catalog read without a single error: a manifest or slice manifest that
  could not be read (a 503 past the retries, a 403, a reset) stops it before any deletion,
  with exit 1 and the reason;
- unknown backups (damaged, invalid, newer format, not a backup id) are kept and not counted;
  while one exists no artifact and no slice is deleted (it may reference any of them);
- backups dated in the future (a wrong clock) are kept and not counted;
- an incomplete backup goes once it is older than the grace time and its manifest is
  proven absent, under the lock (so no backup is running);
- artifacts go when no kept backup references them, slices when they end before the
  consistency point of the oldest backup kept (never the newest slice);
- everything under the backups' lock, each deletion checked it is still held; a
  termination signal stops it between two deletions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import MenderBackupError, UsageError
from ..output import Reporter
from . import pitr
from .catalog import INCOMPLETE, Catalog
from .repository import Repository
from .retention import Policy, keep

INCOMPLETE_GRACE_SECONDS = 3600     # an incomplete backup younger than this may still be running


@dataclass
class PruneResult:
    """What prune kept (and by which rules), deleted or would delete, and held back."""
    dry_run: bool
    keep: dict[str, list[str]]
    unknown: dict[str, str]
    delete: list[str]
    delete_incomplete: list[str]
    delete_artifacts: int
    delete_artifact_bytes: int
    delete_oplog_slices: list[str]
    held_back: str = ""

    def to_json(self) -> dict:
        return {"dry_run": self.dry_run, "keep": self.keep, "unknown": self.unknown, "delete": self.delete,
                "delete_incomplete": self.delete_incomplete, "delete_artifacts": self.delete_artifacts,
                "delete_artifact_bytes": self.delete_artifact_bytes,
                "delete_oplog_slices": self.delete_oplog_slices,
                **({"held_back": self.held_back} if self.held_back else {})}

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (f"kept {len(self.keep)} backup(s); {verb} {len(self.delete)} backup(s), "
                f"{len(self.delete_incomplete)} incomplete backup(s), {self.delete_artifacts} artifact(s), "
                f"{len(self.delete_oplog_slices)} oplog slice(s)")


class PruneRefused(MenderBackupError):
    """The catalog could not be read whole: nothing is deleted."""


def _refuse_on_doubt(cat: Catalog, slices: pitr.Slices) -> None:
    doubt = [f"backup {e.id}: {e.problem}" for e in cat.read_errors] + \
            [f"oplog slice {d.name}: its manifest could not be read ({d.problem})" for d in slices.read_errors]
    if doubt:
        raise PruneRefused(f"prune deleted nothing: the destination could not be read whole ({doubt[0]}"
                           + (f"; and {len(doubt) - 1} more" if len(doubt) > 1 else "") + "); run it again")


def plan(cat: Catalog, slices: pitr.Slices, stored: dict[str, int], policy: Policy, now: datetime,
         dry_run: bool) -> tuple[PruneResult, list[str], list]:
    """What prune keeps and deletes, and why; pure: no store, no clock of its own.
    -> (the result document, artifact keys to delete, slices to delete)"""
    counted = {e.id: e.time for e in cat.complete if not e.future}
    reasons = keep(counted, policy)
    verified = [e for e in cat.complete if e.passed_verification]
    if verified:    # the newest backup a test restore passed is never deleted, whatever the policy says
        reasons.setdefault(verified[-1].id, []).append("newest verified")
    for e in cat.complete:
        if e.future:
            reasons.setdefault(e.id, []).append("dated in the future")
        if e.verdict_unreadable:
            reasons.setdefault(e.id, []).append("its verdict could not be read")
    kept = [e for e in cat.complete if e.id in reasons]
    doomed = [e.id for e in cat.complete if e.id not in reasons]
    stale = [e.id for e in cat.entries if e.state == INCOMPLETE and e.time is not None
             and (now - e.time).total_seconds() > INCOMPLETE_GRACE_SECONDS]
    held_back = ""
    if cat.unknown:
        held_back = (f"{len(cat.unknown)} backup(s) in an unknown state may reference any artifact and oplog "
                     f"slice: none deleted")
        orphans, old_slices = [], []
    else:
        referenced = {a.key for e in kept for a in e.manifest.artifacts}
        orphans = sorted(k for k in stored if k not in referenced)
        old_slices = unneeded_slices([e.manifest for e in kept], slices)
    return PruneResult(
        dry_run=dry_run,
        keep={bid: rules for bid, rules in sorted(reasons.items())},
        unknown={e.id: e.problem for e in cat.unknown},
        delete=doomed,
        delete_incomplete=stale,
        delete_artifacts=len(orphans),
        delete_artifact_bytes=sum(stored[k] for k in orphans),
        delete_oplog_slices=[s.name for s in old_slices],
        held_back=held_back,
    ), orphans, old_slices


def unneeded_slices(kept, slices: pitr.Slices) -> list:
    """Slices (valid or damaged, by the range in their name) that end before the consistency
    point of the oldest backup kept: no restore can use them. Never the newest slice (the next
    `mender-backup oplog` continues from it), and none when no kept backup is point-in-time
    consistent (nothing tells which are needed)."""
    ends = [m.point_in_time.end for m in kept if m.point_in_time and m.point_in_time.end]
    every = slices.valid + slices.damaged
    if not ends or not every:
        return []
    oldest = min(ends)
    newest = max(every, key=lambda s: (s.last, s.first))
    return [s for s in every if s.last < oldest and s is not newest]


def run(repo: Repository, policy: Policy, reporter: Reporter, dry_run: bool,
        break_lock: bool = False) -> PruneResult:
    if policy.empty:
        raise UsageError("no retention policy given (--keep-last/--keep-daily/--keep-weekly/--keep-monthly): "
                         "refusing to prune everything")
    repo.check(write=not dry_run)
    if dry_run:   # changes nothing, so it needs no lock
        return _report(_decide(repo, policy, True)[0], reporter)
    with repo.backups_lock("prune") as lock:
        lock.acquire(break_lock, reporter.warn)
        result, orphans, slices = _decide(repo, policy, False)
        _report(result, reporter)
        for bid in result.delete:
            repo.delete_backup(lock, bid)
        for bid in result.delete_incomplete:
            if not repo.delete_incomplete(lock, bid):
                reporter.warn(f"backup {bid} was listed without a manifest but has one now: kept")
        repo.delete_artifacts(lock, orphans)
        for s in slices:
            repo.delete_slice(lock, s)
        n = repo.collect_leftovers(lock)
        if n:
            reporter.info(f"removed {n} unfinished upload(s) or partial file(s) of killed runs")
    return result


def _decide(repo: Repository, policy: Policy, dry_run: bool) -> tuple[PruneResult, list[str], list]:
    now = datetime.now(timezone.utc)
    cat, slices = repo.backups(now), repo.slices()
    _refuse_on_doubt(cat, slices)
    return plan(cat, slices, repo.stored_artifacts(), policy, now, dry_run)


def _report(result: PruneResult, reporter: Reporter) -> PruneResult:
    verb = "would delete" if result.dry_run else "deleting"
    reporter.info(f"prune: keeping {len(result.keep)} backup(s), {verb} {len(result.delete)} backup(s), "
                  f"{len(result.delete_incomplete)} incomplete backup(s), {result.delete_artifacts} "
                  f"unreferenced artifact(s) and {len(result.delete_oplog_slices)} oplog slice(s) no kept "
                  f"backup needs")
    for bid, why in result.unknown.items():
        reporter.warn(f"backup {bid} kept, state unknown: {why}")
    if result.held_back:
        reporter.warn(result.held_back)
    return result


def after_backup(repo: Repository, policy: Policy, reporter: Reporter, backup_id: str) -> PruneResult:
    """`backup --keep-*`: the policy applied after a successful backup, under a lock of its own.
    A failure says the backup itself is complete (and keeps the failure's exit code)."""
    from .failures import translate
    try:
        return run(repo, policy, reporter, dry_run=False)
    except Exception as exc:
        err = translate(exc)
        raise MenderBackupError(f"backup {backup_id} is complete, but applying the retention policy failed: "
                                f"{err}", exit_code=err.exit_code) from None
