"""`mender-backup key generate|show`."""

from __future__ import annotations

import typer

from .common import JsonOut, reporter, run, settings, show

key_app = typer.Typer(help="Encryption keys: make one, or show which keys are configured (fingerprints only).",
                      no_args_is_help=True)


@key_app.command("generate")
def key_generate() -> None:
    """Print a new random key (base64 of 32 bytes) on stdout, its fingerprint on stderr.
    Store it in a Kubernetes Secret or a 0600 file; it is never needed on a command line."""
    from ..engine import keys
    k = keys.generate()
    typer.echo(k.to_base64())
    typer.echo(f"fingerprint {k.fingerprint}", err=True)


@key_app.command("show")
def key_show(json_out: JsonOut = False) -> None:
    """The fingerprints of the keys in MENDER_BACKUP_ENCRYPTION_KEY(_FILE), the first being the
    one new backups are encrypted with. `verify` and `list` print the fingerprint a backup needs."""
    from ..engine import keys
    rep = reporter(json_out, False)
    env = settings(rep).environ
    show(rep, run(rep, lambda: keys.configured(env)))
