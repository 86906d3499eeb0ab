"""What a restore does with the oplog: whether it replays the archive's (a consistent
backup's by default, a `mongodump --oplog` archive's on request), and the replay itself:
the archive's oplog, spooled to a temporary file by the insert pass, then the slices of a
--to-time restore, fetched and checked before anything was written (engine/pitr.py)."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from ...errors import UsageError
from ...format import compression
from ...format.archive import ArchiveReader
from ...format.slices import parse_time
from ...output import Reporter
from .. import namespaces, pitr
from ..replay.commands import IndexCatalog
from ..replay import Limit, Replay


def plan(opts, manifest, sel: namespaces.Selection, point: pitr.Plan | None) -> dict:
    """Whether the archive's oplog is replayed, and why (or why not)."""
    if not sel.has_oplog:
        if opts.oplog_replay and not point:
            raise UsageError("no oplog to replay: the archive holds none (made without mongodump --oplog, "
                             "or a backup of a server without an oplog)")
        return {"in_archive": False, "replay": bool(point), "slices": point.describe()["slices"] if point else []}
    consistent = bool(manifest and manifest.point_in_time and manifest.point_in_time.consistent)
    replay = opts.oplog_replay if opts.oplog_replay is not None else consistent
    if point and not replay:
        raise UsageError("--to-time replays the oplog: it cannot go with --no-oplog-replay")
    out = {"in_archive": True, "replay": replay, "slices": point.describe()["slices"] if point else []}
    if manifest and manifest.point_in_time and manifest.point_in_time.end:
        out["consistent_at"] = manifest.point_in_time.end.as_json()
    if not replay:
        out["reason"] = ("not replayed: --no-oplog-replay" if opts.oplog_replay is False else
                         "not replayed (mongodump --oplog archive): add --oplog-replay to replay it")
    return out


@dataclass
class Job:
    """What a replay needs besides the target: the plan (plan()), the index catalog it
    changes, where it stops and which databases it carries forward, the archive (its oplog,
    read again for a dry run) and the slices after it."""
    plan: dict
    catalog: IndexCatalog
    limit: Limit | None = None
    databases: set[str] | None = None
    read_archive: Callable[[], BinaryIO] | None = None
    slices: list = field(default_factory=list)        # [(slice, opener)] from source.oplog()


def job(opts, source, plan_: dict, catalog_: IndexCatalog) -> Job:
    """The replay of a restore with these options from this source."""
    point = source.point
    pit = point.manifest.point_in_time if point else None
    # a backup of some databases carries them forward only, whatever the slices hold
    dbs = set(opts.databases) or (set(pit.databases) if pit and pit.databases else None)
    return Job(plan_, catalog_, Limit(*parse_time(opts.to_time)) if opts.to_time else None, dbs,
               source.open, source.oplog())


def replay(client, job: Job, spool: BinaryIO | None, reporter: Reporter) -> dict | None:
    """The archive's oplog (spooled by the insert pass, or read now for a dry run: client
    None), then the slices after the backup's consistency point, up to the limit."""
    if not job.plan.get("replay"):
        return None
    r = Replay(client, job.catalog, job.databases, job.limit)
    if job.plan.get("in_archive"):
        with contextlib.ExitStack() as stack:
            if spool is None:          # a dry run: read the archive's oplog now
                spool = stack.enter_context(tempfile.TemporaryFile(prefix="mender-backup-oplog-"))
                _spool_archive_oplog(job.read_archive, spool)
            spool.seek(0)
            r.feed_stream(spool)
    for _, open_slice in job.slices:   # from the one holding the backup's consistency point on
        _, plain = compression.decompressor(open_slice())
        if not r.feed_stream(plain):
            break
    stats = r.finish()
    verb = "would replay" if client is None else "replayed"
    reporter.info(f"oplog: {verb} {stats.entries} entries"
                  + (f" up to {stats.last}" if stats.last else "")
                  + (f", skipped {sum(stats.skipped.values())}" if stats.skipped else ""))
    return stats.as_dict()


def _spool_archive_oplog(read_archive: Callable[[], BinaryIO], spool: BinaryIO) -> None:
    with contextlib.closing(read_archive()) as f:
        _, plain = compression.decompressor(f)
        for seg in ArchiveReader(plain).segments():
            if (seg.db, seg.collection) == namespaces.OPLOG:
                spool.write(seg.data)
