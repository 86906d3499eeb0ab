"""What every `mender-backup` command shares: the option types, the reporter, and `_run`, which
turns any failure into one line on stderr and an exit code."""

from __future__ import annotations

import functools
import os
import signal
from typing import Annotated, Optional

import typer

from ..engine.failures import translate
from ..errors import Terminated
from ..output import Reporter
from ..redact import scrub

MongoURL = Annotated[str, typer.Option(
    "--mongodb-url", envvar="MONGODB_URL", show_envvar=True, show_default=False,
    help="MongoDB connection string. Prefer the environment variable: arguments are visible to other users.")]
Destination = Annotated[str, typer.Option(
    "--destination", "-d", envvar="MENDER_BACKUP_DESTINATION", show_envvar=True, show_default=False,
    help="Where backups live: s3://bucket/prefix or file:///path.")]
JsonOut = Annotated[bool, typer.Option("--json", help="JSON lines on stdout (for logs and scripts).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the result.")]
BreakLock = Annotated[bool, typer.Option(
    "--break-lock", help="Remove a lock left by a dead run first. Only when no other run is active.")]
LockStaleAfter = Annotated[int, typer.Option(
    "--lock-stale-after", envvar="MENDER_BACKUP_LOCK_STALE_AFTER", show_envvar=True, min=60,
    help="A lock its holder has not refreshed for this many seconds is stale and taken over "
         "(holders refresh every minute; a dead process on this host is stale at once).")]
Databases = Annotated[Optional[list[str]], typer.Option(
    "--db", help="Only this database (repeat for more). Default: every database but admin, local, config.")]


def _keep(name: str, help_: str):
    return Annotated[int, typer.Option(f"--keep-{name}", envvar=f"MENDER_BACKUP_KEEP_{name.upper()}",
                                       show_envvar=True, min=0, help=help_)]


KeepLast = _keep("last", "Keep the N newest backups.")
KeepDaily = _keep("daily", "Keep the newest backup of each of the last N days that have one.")
KeepWeekly = _keep("weekly", "Keep the newest backup of each of the last N weeks that have one.")
KeepMonthly = _keep("monthly", "Keep the newest backup of each of the last N months that have one.")

# what a run stopped by a signal leaves, by command (README, Exit codes)
NOTHING_KEPT = "nothing was kept from this run (partial archive removed, upload aborted, lock released)"
RESTORE_STOPPED = ("the restore stopped part way: the target may hold part of the backup "
                   "(a rerun needs --drop)")
PRUNE_STOPPED = "stopped part way; what was deleted stays deleted, the rest is kept; lock released"


def reporter(json_out: bool, quiet: bool) -> Reporter:
    return Reporter("json" if json_out else "quiet" if quiet else "human")


@functools.cache
def _settings():
    from ..engine.settings import Settings
    return Settings.from_env(os.environ)


def settings(rep: Reporter, obs=None):
    """The environment, read once per process (the only read: engine/settings.py); a bad value
    is the command's error."""
    return run(rep, _settings, obs)


def keyring(rep: Reporter, obs=None):
    """The keys of MENDER_BACKUP_ENCRYPTION_KEY(_FILE); a bad one is the command's error."""
    from ..engine import keys
    env = settings(rep, obs).environ
    return run(rep, lambda: keys.from_env(env), obs)


def observer(operation: str, destination: str, rep: Reporter):
    from ..engine.observe import Observer
    return Observer(operation, destination, rep, settings(rep).environ)


def show(rep: Reporter, result) -> None:
    """A typed result: its JSON for scripts, its description for people."""
    rep.result(result.to_json(), result.describe())


def fail(rep: Reporter, msg: str, code: int) -> None:
    rep.error(" ".join(scrub(msg).split()), code)     # one line, whatever the message held
    raise typer.Exit(code)


def run(rep: Reporter, fn, obs=None, stopped: str = ""):
    """Run a command body: our errors and the libraries' become one line and an exit code
    (after the observer, if any, pushed the failure's metrics and notified). A signal
    (Terminated, after every cleanup on its way up ran) too: `stopped` says what is left."""
    try:
        return fn()
    except (Terminated, KeyboardInterrupt) as exc:
        stop = exc if isinstance(exc, Terminated) else Terminated(signal.SIGINT)
        message = f"{stop}: {stopped}" if stopped else str(stop)
        code = stop.exit_code
    except Exception as exc:
        err = translate(exc)
        message, code = str(err), err.exit_code
    if obs is not None:
        obs.finish(code, " ".join(scrub(message).split()))
    fail(rep, message, code)
