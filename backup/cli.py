"""`mender-backup`: the command the CronJob and operators run."""

from __future__ import annotations

import typer

from . import __version__
from .errors import EXIT_CODES_HELP, EXIT_USAGE

app = typer.Typer(
    name="mender-backup",
    help="Backup and restore for Mender Server: its MongoDB databases and its artifact bucket "
         "as one consistent, verifiable backup.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _not_implemented(name: str) -> None:
    typer.echo(f"mender-backup {name}: not implemented yet", err=True)
    raise typer.Exit(EXIT_USAGE)


@app.command()
def backup() -> None:
    """Back up MongoDB and the artifact bucket to a destination."""
    _not_implemented("backup")


@app.command()
def restore() -> None:
    """Restore a backup into MongoDB and an artifact bucket."""
    _not_implemented("restore")


@app.command("list")
def list_() -> None:
    """List the backups at a destination."""
    _not_implemented("list")


@app.command()
def verify() -> None:
    """Check a backup's checksums (and, with --deep, its contents)."""
    _not_implemented("verify")


@app.command()
def prune() -> None:
    """Delete backups a retention policy no longer keeps."""
    _not_implemented("prune")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


def main() -> None:
    app()
