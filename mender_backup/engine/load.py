"""The documents' way into the target: parallel inserts, each collection checked as soon as
its last insert is acknowledged (while others still insert), its indexes built right after
when no oplog is replayed, and the index builds of different collections in parallel.

Why overlap: a server takes inserts into one table from a few connections at a time only
(PostgreSQL-based ones extend a table under a lock; MongoDB's collection-level work), so
while the archive streams, the server has room for the read-back and the index builds of
the collections already complete (measured: bench/FINDINGS.md). The guarantees do not
move: a collection is read back and compared with the manifest only after every one of
its documents was acknowledged, and its indexes (TTL ones above all) come after that; with
an oplog to replay, every index waits for the replay (engine/restore/).

Memory stays bounded: at most 2 x INSERT_WORKERS segments of SEGMENT_BYTES in flight, and
one batch per read-back cursor.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from typing import BinaryIO, Callable

from ..errors import IntegrityError
from ..format import compression
from ..format.archive import ArchiveReader
from ..format.digest import CollectionDigest
from ..mongo import collections as mongo
from ..output import Reporter
from . import integrity
from .replay.commands import IndexCatalog

Namespace = tuple[str, str]

# tuned on DocumentDB (2 cores): 2-8 insert workers and 1-16 MiB segments are within noise
# of each other there, so the smaller memory wins; 2 checkers keep one collection's read-back
# or index build going beside the inserts without starving them
INSERT_WORKERS = 4
SEGMENT_BYTES = 2 * 1024 * 1024
CHECK_WORKERS = 2
# index builds run one collection a task, in parallel across collections. Not one index a
# task: DocumentDB answers concurrent createIndexes on one collection with "deadlock
# detected", and they were no faster there (3 indexes of the largest collection: 3.8 s in
# one command, 3.0-3.5 s each at once)
INDEX_WORKERS = 2
VERIFY_LEVELS = ("full", "counts")
BUCKETS = "system.buckets."


def utcnow() -> datetime:
    """The real clock (the Loader's default; tests pass their own)."""
    return datetime.now(timezone.utc)


class Loader:
    """Inserts the archive's documents and checks each collection against `expected`:
    `full` reads every document back (count and content digest), `counts` compares the
    server's count with the manifest's. With `indexes_now` (nothing to replay), a
    collection's indexes are built as soon as it is checked."""

    def __init__(self, client, data: dict[Namespace, Namespace], expected: dict[Namespace, integrity.Expected],
                 verify: str, catalog: IndexCatalog, indexes_now: bool, reporter: Reporter,
                 now: Callable[[], datetime] = utcnow):
        self.client, self.data, self.expected, self.verify = client, data, expected, verify
        self.catalog, self.indexes_now, self.reporter = catalog, indexes_now, reporter
        self.now = now                                        # the clock TTL expiry is judged by
        self.verification = Verification(data, verify)       # the completed checks
        self.built: set[Namespace] = set()
        self._lock = threading.Lock()
        self._inflight: dict[Namespace, int] = {}             # archive ns -> inserts not acknowledged yet
        self._ended: set[Namespace] = set()                   # its EOF block was read
        self._checks: list[Future] = []
        self._checked: set[Namespace] = set()
        self._closing = False                                 # after a failure: start no more checks
        self._indexer = ThreadPoolExecutor(INDEX_WORKERS, thread_name_prefix="index")
        self._builds: dict[Namespace, Future] = {}            # collection -> its index build

    # -------------------------------------------------------------- the insert pass
    def run(self, stream: BinaryIO, side: dict[Namespace, Callable[[bytes], object]], total: int
            ) -> "Verification":
        """Insert everything (namespaces in `side` go to their sinks instead) and check
        every collection; with `indexes_now`, build every index too. -> the checks, every
        planned collection's (`Verification.require` proves it)."""
        _, plain = compression.decompressor(stream)
        reader = ArchiveReader(plain)
        with ThreadPoolExecutor(INSERT_WORKERS, thread_name_prefix="insert") as inserts, \
                ThreadPoolExecutor(CHECK_WORKERS, thread_name_prefix="check") as self._checker, \
                self.reporter.progress("restoring documents", total=total or None, unit="documents") as prog:
            try:
                pending: set[Future] = set()
                for seg in reader.segments(SEGMENT_BYTES, ends=True):
                    ns = (seg.db, seg.collection)
                    if ns in side:
                        if seg.data:
                            side[ns](seg.data)
                        continue
                    if ns not in self.data:
                        continue
                    if seg.end:
                        self._ended_ns(ns)
                        continue
                    if len(pending) >= 2 * INSERT_WORKERS:          # bounded memory: wait for a slot
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        self._settle(done, prog)
                    with self._lock:
                        self._inflight[ns] = self._inflight.get(ns, 0) + 1
                    f = inserts.submit(mongo.insert_raw, self.client, *self.data[ns], seg.data)
                    f.add_done_callback(lambda _f, ns=ns: self._acknowledged(ns))
                    pending.add(f)
                    self._raise_failed_check()
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                self._settle(done, prog)
                # `wait` returns once the futures are done, which can be before their done
                # callbacks ran (_acknowledged, which schedules a collection's check): the
                # pool's threads run those, so once they are joined, every callback has run
                # and every check is scheduled before _wait_checks takes the list
                inserts.shutdown(wait=True)
                # namespaces without an EOF block of their own (none in a well-formed archive
                # that the reader accepted, but nothing is left unchecked)
                for ns in self.data:
                    self._ended_ns(ns)
                self._wait_checks()
                self.verification.require()
            except BaseException:
                # a failure, or a signal (Terminated, in this thread): nothing more starts, the
                # running inserts and checks end (a read-back stops at its next batch), and the
                # `with` joins their threads before the exception goes on
                with self._lock:
                    self._closing = True
                inserts.shutdown(wait=False, cancel_futures=True)
                self._checker.shutdown(wait=False, cancel_futures=True)
                self._indexer.shutdown(wait=True, cancel_futures=True)
                raise
        return self.verification

    def _settle(self, done: set[Future], prog) -> None:
        for f in done:
            prog.advance(f.result())          # an insert's error is raised here

    def _acknowledged(self, ns: Namespace) -> None:
        with self._lock:
            self._inflight[ns] -= 1
        self._maybe_check(ns)

    def _ended_ns(self, ns: Namespace) -> None:
        with self._lock:
            self._ended.add(ns)
        self._maybe_check(ns)

    def _maybe_check(self, ns: Namespace) -> None:
        """Once a namespace's block ended and its last insert is acknowledged: check it."""
        with self._lock:
            if self._closing or ns in self._checked or ns not in self._ended or self._inflight.get(ns, 0):
                return
            self._checked.add(ns)
            self._checks.append(self._checker.submit(self._check, ns))

    def _raise_failed_check(self) -> None:
        for f in self._checks:
            if f.done() and f.exception() is not None:
                raise f.exception()

    def _wait_checks(self) -> None:
        done, not_done = wait(self._checks, return_when=FIRST_EXCEPTION)
        for f in done:
            f.result()
        for f in not_done:         # only after a failure
            f.cancel()

    # -------------------------------------------------------------- one collection
    def _check(self, ns: Namespace) -> None:
        target = self.data[ns]
        want = self.expected.get(ns)
        if self.verify == "full":
            got = CollectionDigest()
            for batch in mongo.raw_batches(self.client, *target):
                if self._closing:
                    return                    # the restore failed or was stopped: no verdict
                got.update(batch)
        else:
            got = _Counted(mongo.count(self.client, *target))
        if want is not None:
            problems = integrity.compare({ns: want}, {ns: got}, "the target", counts_only=self.verify != "full")
            if problems:
                raise IntegrityError("restore verification failed: " + "; ".join(problems))
        self.verification.record(ns, got)
        if self.indexes_now:
            key = (target[0], target[1].removeprefix(BUCKETS))
            if key in self.catalog.indexes:
                self._build(key)

    def _build(self, key: Namespace) -> None:
        """Start the build of one collection's indexes (checked in build_indexes)."""
        with self._lock:
            if key in self.built or self._closing:
                return
            self.built.add(key)
        db, coll = key
        if coll not in self.client[db].list_collection_names(filter={"name": coll}):
            return                        # dropped by the oplog, or a view
        self._builds[key] = self._indexer.submit(mongo.build_indexes, self.client, db, coll, self.catalog.indexes[key])

    def report(self) -> None:
        v = self.verification.require()
        how = "counts and content digests" if self.verify == "full" else "counts (--verify counts)"
        self.reporter.info(f"verified: {v.documents} documents in {len(v.checked)} collections match the backup "
                           f"({how})")

    def build_indexes(self) -> dict[str, int]:
        """Every index not built yet (after an oplog replay: as the replay left the catalog),
        then every collection's index set checked; returns the documents already past a TTL
        index's limit (restored and verified; the server deletes them within a minute)."""
        for key in sorted(self.catalog.indexes):
            self._build(key)
        expired: dict[str, int] = {}
        try:
            for key, build in sorted(self._builds.items()):
                build.result()
                problem, n = check_indexes(self.client, key, self.catalog.indexes[key], self.reporter,
                                            self.now())
                if problem:
                    raise IntegrityError("restore verification failed: " + problem)
                if n:
                    expired[f"{key[0]}.{key[1]}"] = n
        finally:
            self._closing = True
            self._indexer.shutdown(wait=True, cancel_futures=True)
        return dict(sorted(expired.items()))


class Verification:
    """What "verified" is made of: a completed check for every collection the restore
    planned, i.e. the target's count (and with `full`, its content digest) compared with
    the manifest and found equal. Only `Loader._check` records one, after the comparison
    passed; `require` raises IntegrityError when a planned collection has none, so a
    restore cannot say "verified" for a collection nobody checked."""

    def __init__(self, planned, level: str):
        self.planned: frozenset[Namespace] = frozenset(planned)
        self.level = level
        self.checked: dict[Namespace, CollectionDigest] = {}    # archive ns -> what the target holds
        self._lock = threading.Lock()

    def record(self, ns: Namespace, found: CollectionDigest) -> None:
        with self._lock:
            self.checked[ns] = found

    @property
    def documents(self) -> int:
        return sum(d.count for d in self.checked.values())

    def require(self) -> "Verification":
        with self._lock:
            missing = sorted(self.planned - self.checked.keys())
        if missing:
            names = ", ".join(f"{db}.{c}" for db, c in missing[:5])
            raise IntegrityError(f"restore verification failed: {len(missing)} collection(s) were not checked "
                                 f"({names}{', ...' if len(missing) > 5 else ''})")
        return self


class _Counted(CollectionDigest):
    """A count from the server, compared like a digest whose content is not known."""

    def __init__(self, n: int):
        super().__init__()
        self.count = n


def check_indexes(client, key: Namespace, specs: list[dict], reporter: Reporter,
                  now: datetime | None = None) -> tuple[str, int]:
    """One collection's built indexes -> (a problem or "", documents past a TTL limit at
    `now`, default the real clock)."""
    db, coll = key
    want = {i.get("name") for i in specs}
    missing = want - mongo.index_names(client, db, coll)
    if missing:
        return f"{db}.{coll}: index(es) missing: {', '.join(sorted(missing))}", 0
    n = mongo.expired(client, db, coll, specs, now or utcnow())
    if n:
        reporter.info(f"{db}.{coll}: {n} restored document(s) are past their TTL: MongoDB's TTL monitor "
                      f"deletes them within a minute", namespace=f"{db}.{coll}", expired=n)
    return "", n
