"""`mender-backup oplog`: ship the oplog written since the last run as a slice.

Run every few minutes (the chart's second CronJob). A run reads the entries from
the last shipped position (the newest slice's last entry, else the newest
consistent backup's consistency point, else the oldest entry the oplog has) up to
the newest entry, and writes them as one compressed slice plus its manifest, the
manifest last. The first entry read must be the one it started from: if that entry
is gone, the oplog rolled over since the last run and entries were lost. The run
then still ships what the oplog has (a new chain starts there, so backups taken
after it are restorable to any later time) and fails with exit 5: times inside the
gap cannot be restored.

It takes a lock of its own (locks/oplog.lock), not the backups' one: it runs while
a long backup does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone

from bson.raw_bson import RawBSONDocument

from .. import __version__
from ..errors import IntegrityError, MenderBackupError, UsageError
from ..format import compression
from ..format.archive import iter_documents
from ..format import encryption
from ..format.digest import HashingWriter
from ..format.encryption import Keyring
from ..format.layout import slice_key
from ..format.slices import ENCRYPTED_SLICE_VERSION, OpTime, SliceManifest, slice_context, slice_name
from ..mongo import client as mongo_client
from ..mongo import oplog as mongo_oplog
from ..output import Reporter
from ..stores import open_store
from .settings import Settings
from .lock import STALE_AFTER_SECONDS, Lock
from .repository import Repository


@dataclass
class OplogOptions:
    mongodb_url: str
    destination: str
    break_lock: bool = False
    lock_stale_after: float = STALE_AFTER_SECONDS
    keyring: Keyring | None = None     # with a key, slices are encrypted as the backups are
    settings: Settings = Settings()


def _since(repo: Repository) -> tuple[OpTime | None, str]:
    """Where this run continues from, and what that position is. Decided on a read without
    errors (an unread slice may be the newest); a damaged slice is passed over (the chain
    continues from the valid ones, and `list` shows the damaged one)."""
    slices = repo.slices()
    slices.require_readable("cannot tell where the oplog continues")
    if slices.valid:
        return max(s.last for s in slices.valid), "the last slice"
    cat = repo.backups()
    if cat.read_errors:
        raise MenderBackupError(f"cannot tell where the oplog continues: backup {cat.read_errors[0].id}'s "
                                f"{cat.read_errors[0].problem}")
    ends = [e.manifest.point_in_time.end for e in cat.complete
            if e.manifest.point_in_time and e.manifest.point_in_time.end]
    if ends:
        return max(ends), "the newest consistent backup"
    return None, "the oldest entry of the oplog"


@dataclass
class OplogResult:
    """One run of `mender-backup oplog`: how many entries it shipped, continuing from where, and
    the slice it wrote (None: nothing new)."""
    shipped: int
    since: dict | None
    slice: dict | None = None

    def to_json(self) -> dict:
        return {"shipped": self.shipped, "since": self.since, "slice": self.slice}

    def describe(self) -> str:
        return f"shipped {self.shipped} oplog entries" + (f" up to {self.slice['to']['time']}" if self.slice
                                                         else " (nothing new)")


def run(opts: OplogOptions, reporter: Reporter) -> OplogResult:
    dest = open_store(opts.destination, opts.settings.destination_store)
    client = mongo_client.connect(opts.mongodb_url)
    dest.check()
    reason = mongo_oplog.available(client)
    if reason:
        raise UsageError(f"cannot ship the oplog: {reason}; point-in-time recovery needs a replica set")
    repo = Repository(dest)
    with repo.oplog_lock(opts.lock_stale_after) as lock:
        lock.acquire(opts.break_lock, reporter.warn)
        n = repo.collect_leftovers(lock)     # of killed oplog runs: only under oplog/
        if n:
            reporter.info(f"removed {n} unfinished upload(s) or partial file(s) left by an earlier oplog run")
        return _ship(client, repo, lock, reporter, opts.keyring.current if opts.keyring else None)


def _ship(client, repo: Repository, lock: Lock, reporter: Reporter, key: encryption.Key | None) -> OplogResult:
    dest = repo.store
    since, origin = _since(repo)
    end = mongo_oplog.newest(client)
    if end is None or (since is not None and end <= since.ts):
        reporter.info(f"no new oplog entries since {since or 'the start'}")
        return OplogResult(0, since.as_json() if since else None)
    first = mongo_oplog.first_from(client, since.ts if since is not None else None)
    rolled = since is not None and first != since.ts
    start = since.ts if since is not None and not rolled else first
    name = slice_name(start, end)
    data_key = slice_key(f"{name}.bson.zst")
    count, first_entry, last_entry = 0, None, None
    try:
        with dest.open_write(data_key) as raw_out, contextlib.ExitStack() as stack:
            hashing = HashingWriter(raw_out)
            sink = stack.enter_context(encryption.encryptor(hashing, key, slice_context(name))) if key else hashing
            with compression.compressor(sink, "zstd") as z:
                for batch in mongo_oplog.raw_range(client, start, end):
                    for raw in iter_documents(batch):
                        last_entry = RawBSONDocument(bytes(raw))
                        first_entry = first_entry or last_entry
                        count += 1
                    z.write(batch)
        # the capped oplog drops its oldest entries first: the first entry still there
        # means nothing after it was dropped while we read
        if first_entry is None or first_entry["ts"] != start or last_entry["ts"] != end \
                or mongo_oplog.rolled_over(client, start):
            raise IntegrityError(f"the oplog rolled over while it was read from {start.time}:{start.inc}: "
                                 f"nothing shipped; run again")
    except BaseException:
        with contextlib.suppress(Exception):
            dest.delete([data_key])        # no manifest: the slice does not exist; leave no bytes either
        raise
    first_pos, last_pos = mongo_oplog.optime(first_entry), mongo_oplog.optime(last_entry)
    manifest = SliceManifest(first_pos, last_pos, count, hashing.size, hashing.hexdigest(), "zstd",
                             datetime.now(timezone.utc).isoformat(), __version__)
    if key:
        manifest.format_version = ENCRYPTED_SLICE_VERSION
        manifest.encryption = {"algorithm": encryption.ALGORITHM, "key_fingerprint": key.fingerprint}
    repo.commit(lock, slice_key(f"{name}.json"), manifest.to_json())
    result = OplogResult(count, since.as_json() if since else None,
                         {"from": first_pos.as_json(), "to": last_pos.as_json(), "key": data_key,
                          "size": hashing.size})
    reporter.info(f"oplog slice {name}: {count} entries, {first_pos} to {last_pos} (continuing {origin})",
                  **result.to_json())
    if rolled:
        raise IntegrityError(f"the oplog rolled over since {origin} (at {since}): the entries between it and "
                             f"{first_pos} are lost, no restore can reach a time between them; shipped {count} "
                             f"entries from {first_pos} on (the next backup starts a new restorable range)")
    return result
