"""`mender-backup oplog`."""

from __future__ import annotations

from ..engine.lock import STALE_AFTER_SECONDS
from ..redact import register_url_secrets
from .common import (NOTHING_KEPT, BreakLock, Destination, JsonOut, LockStaleAfter, MongoURL, Quiet, keyring,
                     reporter, run, settings, show)


def oplog(
    mongodb_url: MongoURL = "",
    destination: Destination = "",
    break_lock: BreakLock = False,
    lock_stale_after: LockStaleAfter = int(STALE_AFTER_SECONDS),
    json_out: JsonOut = False, quiet: Quiet = False,
) -> None:
    """Ship the oplog written since the last run to the destination, for point-in-time recovery.

    Run it every few minutes (the chart's oplog CronJob), more often than the oplog takes to
    roll over. Each run writes one compressed, checksummed slice and its manifest (last).
    A roll-over between two runs is reported with exit 5: times in that gap cannot be restored.
    """
    from ..engine import ship

    rep = reporter(json_out, quiet)
    register_url_secrets(mongodb_url)
    opts = ship.OplogOptions(mongodb_url=mongodb_url, destination=destination, break_lock=break_lock,
                             lock_stale_after=lock_stale_after, keyring=keyring(rep), settings=settings(rep))
    show(rep, run(rep, lambda: ship.run(opts, rep), stopped=NOTHING_KEPT))
