"""A consistent backup on a live server: the dump plus the oplog written during it,
the way `mongodump --oplog` makes one.

Before the dump we note the oplog's newest entry (or the start of the oldest open
transaction); after it, every entry from there to the newest one then goes into
the archive as the oplog namespace (database "", collection "oplog"), so replaying
it over the dumped documents gives the source's state at that newest entry: the
consistency point. If the entry we started from is gone by then, the oplog rolled
over during the dump and entries are missing: the backup fails rather than pretend.
Without an oplog (a standalone server) the backup says it is not point-in-time
consistent: each collection is then read at a moment of its own.
"""

from __future__ import annotations

from bson.raw_bson import RawBSONDocument

from ..errors import IntegrityError
from ..format.archive import CollectionMetadata, iter_documents
from ..format.archive_writer import ArchiveWriter
from ..format.digest import CollectionDigest
from ..format.manifest import OplogEntry, PointInTime
from ..mongo import oplog as mongo_oplog
from ..output import Reporter

OPLOG_NS = ("", "oplog")


class Capture:
    def __init__(self, client, reporter: Reporter, databases: list[str] | None = None):
        self.client, self.reporter = client, reporter
        # a backup of some databases keeps only their entries: a restore must not write the others
        self.databases = set(databases) if databases else None
        self.reason = mongo_oplog.available(client)
        self.start = None if self.reason else mongo_oplog.copy_start(client)
        if self.reason:
            reporter.warn(f"this backup is not point-in-time consistent: {self.reason}; each collection "
                          f"is read at a moment of its own")
        else:
            where = f"{self.start.time}:{self.start.inc}" if self.start else "the start of an empty oplog"
            reporter.info(f"consistent backup: oplog position before the dump {where}", oplog_start=where)

    @property
    def enabled(self) -> bool:
        return not self.reason

    def metadata(self) -> list[CollectionMetadata]:
        """The oplog's entry in the archive's prelude (as mongodump writes it)."""
        return [CollectionMetadata(*OPLOG_NS, "", 0, "")] if self.enabled else []

    def _check_not_rolled_over(self) -> None:
        if mongo_oplog.rolled_over(self.client, self.start):
            raise IntegrityError(
                f"the oplog rolled over during the backup: the entry at {self.start.time}:{self.start.inc} it "
                f"started from is gone, so writes made during the dump are lost; make the oplog larger or "
                f"back up when the server is quieter")

    def _wanted(self, entry: RawBSONDocument) -> bool:
        """With --db: the entries of those databases, and the admin commands that may carry
        some (transactions, applyOps, renames), which the replay sorts out entry by entry."""
        if self.databases is None:
            return True
        db = str(entry.get("ns", "")).split(".", 1)[0]
        return db in self.databases or (db == "admin" and entry.get("op") == "c")

    def finish(self, writer: ArchiveWriter) -> PointInTime:
        """Append the oplog written during the dump; -> what the manifest records."""
        if not self.enabled:
            return PointInTime(False, self.reason)
        end = mongo_oplog.newest(self.client)
        self._check_not_rolled_over()
        digest = CollectionDigest()
        first = last = None
        if end is not None:
            for batch in mongo_oplog.raw_range(self.client, self.start, end):
                kept, seen = [], 0
                for raw in iter_documents(batch):
                    seen += 1
                    entry = RawBSONDocument(bytes(raw))
                    mongo_oplog.refuse_uncapturable(entry)
                    last = entry
                    first = first or entry
                    if self._wanted(entry):
                        kept.append(raw)
                data = batch if len(kept) == seen else b"".join(kept)
                if data:
                    digest.update(data)
                    writer.write_segment(*OPLOG_NS, data)
        # checked again: the oplog may have rolled over while we read it
        self._check_not_rolled_over()
        writer.end_collection(*OPLOG_NS)
        pit = PointInTime(True, "", mongo_oplog.optime(first) if first else None,
                          mongo_oplog.optime(last) if last else None,
                          OplogEntry(digest.count, digest.hexdigest(), digest.size),
                          sorted(self.databases) if self.databases else None)
        self.reporter.info(f"oplog captured: {digest.count} entries written during the dump; consistent at "
                           f"{pit.end or 'the start'}", oplog_entries=digest.count,
                           consistency_point=pit.end.as_json() if pit.end else None)
        return pit
