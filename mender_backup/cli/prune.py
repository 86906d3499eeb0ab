"""`mender-backup prune`."""

from __future__ import annotations

from typing import Annotated

import typer

from ..engine.retention import Policy
from .common import (PRUNE_STOPPED, BreakLock, Destination, JsonOut, KeepDaily, KeepLast, KeepMonthly,
                     KeepWeekly, Quiet, reporter, run, settings, show)


def prune(
    destination: Destination = "",
    keep_last: KeepLast = 0, keep_daily: KeepDaily = 0, keep_weekly: KeepWeekly = 0,
    keep_monthly: KeepMonthly = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be deleted; delete nothing.")] = False,
    break_lock: BreakLock = False,
    json_out: JsonOut = False, quiet: Quiet = False,
) -> None:
    """Delete backups the retention policy no longer keeps, incomplete backups older than
    an hour, artifacts that no remaining backup references, and oplog slices that end before
    the oldest remaining backup's consistency point.

    Deletes only what it has proven it may: if any manifest cannot be read it deletes nothing
    (exit 1); backups in an unknown state (damaged, newer format) and backups dated in the
    future are kept and not counted, and while one is unknown no artifact or slice is deleted."""
    from ..engine import prune as engine_prune
    from ..engine.repository import Repository

    rep = reporter(json_out, quiet)
    policy = run(rep, lambda: Policy(keep_last, keep_daily, keep_weekly, keep_monthly))
    access = settings(rep).destination_store
    show(rep, run(rep, lambda: engine_prune.run(Repository.at(destination, access), policy, rep, dry_run, break_lock),
                  stopped=PRUNE_STOPPED))
