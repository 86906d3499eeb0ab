"""`mender-backup`: the command the CronJob and operators run.

One module per command (backup, restore, listing, verify, prune, oplog, key), each a thin
parser: options -> one engine call -> its typed result printed (common.show). What they share
(option types, the reporter, `run`, which makes any failure one line and an exit code) is in
common.py.

Secrets (the MongoDB URL's password, S3 keys) are best passed by environment
(MONGODB_URL, AWS_*), not as arguments: process arguments are visible to every
user of the machine. Encryption keys are read from the environment only
(MENDER_BACKUP_ENCRYPTION_KEY or MENDER_BACKUP_ENCRYPTION_KEY_FILE): no option takes one.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import __version__, signals
from ..errors import EXIT_CODES_HELP, Terminated
from .backup import backup
from .key import key_app
from .listing import list_
from .oplog import oplog
from .prune import prune
from .restore import restore
from .verify import verify

app = typer.Typer(
    name="mender-backup",
    help="Backup and restore for Mender Server: its MongoDB databases and its artifact bucket "
         "as one consistent, verifiable backup.\n\n"
         "Destinations: s3://bucket/prefix (S3 settings from AWS_* variables; "
         "MENDER_BACKUP_DEST_AWS_* override them for the destination) or file:///path.\n\n"
         "Encryption: with MENDER_BACKUP_ENCRYPTION_KEY (base64 of 32 random bytes; several, comma-separated, "
         "for rotation: the first encrypts) or MENDER_BACKUP_ENCRYPTION_KEY_FILE set, backups are encrypted "
         "and encrypted backups can be read.\n\n"
         + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# in the order `--help` lists them
app.command()(backup)
app.command()(restore)
app.command("list")(list_)
app.command()(verify)
app.add_typer(key_app, name="key")
app.command()(prune)
app.command()(oplog)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    pass


def _few_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core), and
    each keeps the freed batches it held: capped at 2 before any thread starts, a backup's
    peak RSS drops by ~15 MiB at the same speed (bench/FINDINGS.md)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)      # M_ARENA_MAX
    except (OSError, AttributeError):
        pass                                         # not glibc: nothing to do


def main() -> None:
    signals.install()       # first: a signal from here on unwinds as Terminated (mender_backup/signals.py)
    _few_malloc_arenas()
    try:
        app()
    except Terminated as stop:      # outside a command's body (parsing, printing the result)
        sys.stderr.write(f"error: {stop}\n")
        sys.exit(stop.exit_code)
