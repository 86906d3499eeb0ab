"""`mender-backup list` (a module named `list` would shadow the builtin in this package)."""

from __future__ import annotations

from ..output import backups_table
from .common import Destination, JsonOut, keyring, reporter, run, settings


def list_(destination: Destination = "", json_out: JsonOut = False) -> None:
    """List the backups at a destination, oldest first: each complete, incomplete (no manifest) or
    unknown (its manifest unreadable, damaged or of a newer version: kept, never deleted), the time
    it is consistent at, and up to when the shipped oplog makes it restorable (restore --to-time).
    Reads only: works on a read-only destination, and without a key for plain backups."""
    from ..engine.listing import listing
    from ..engine.repository import Repository

    rep = reporter(json_out, False)
    keys = keyring(rep)
    access = settings(rep).destination_store
    found = run(rep, lambda: listing(Repository.at(destination, access), keys))
    for w in found.warnings():
        rep.warn(w)
    rep.result(found.rows, backups_table(found.rows))
