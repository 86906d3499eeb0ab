"""`mender-backup verify`: a backup's checksums (--deep: its contents), a test restore
(--restore-into), or the running Mender's health (--mender)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import EXIT_FAILED
from ..redact import register_url_secrets
from .common import Destination, JsonOut, Quiet, fail, keyring, observer, reporter, run, settings, show


def verify(
    backup_id: Annotated[str, typer.Argument(help="A backup id, or `latest`.")] = "latest",
    destination: Destination = "",
    deep: Annotated[bool, typer.Option(
        "--deep", help="Also read the whole archive: structure, each collection's metadata, CRCs, counts "
                       "and content digests.")] = False,
    restore_into: Annotated[str, typer.Option(
        "--restore-into", envvar="MENDER_BACKUP_VERIFY_MONGODB_URL", show_envvar=True, show_default=False,
        help="Test restore: restore the backup into this scratch MongoDB (databases mbv_<random>_<name>), "
             "verify it, drop what it made, record the verdict next to the backup. Prefer the environment "
             "variable: arguments are visible to other users.")] = "",
    restore_artifacts_into: Annotated[str, typer.Option(
        "--restore-artifacts-into", envvar="MENDER_BACKUP_VERIFY_ARTIFACTS_BUCKET", show_envvar=True,
        show_default=False, help="With --restore-into: also copy every artifact into this scratch bucket "
                                 "(under the same unique prefix, removed after) and check it.")] = "",
    mender: Annotated[Optional[list[str]], typer.Option(
        "--mender", envvar="MENDER_BACKUP_VERIFY_MENDER", show_envvar=True, show_default=False,
        help="Check the running Mender instead of a backup (after a restore): call each service's health "
             "endpoint and print one line per service. SERVICE=URL or a URL whose host name names the "
             "service (http://mender-useradm:8080); repeat, or comma-separate. Exit 1 if any is unhealthy.")
    ] = None,
    json_out: JsonOut = False, quiet: Quiet = False,
) -> None:
    """Check a backup's archive checksum and artifacts (and, with --deep, its contents;
    with --restore-into, restore it into a scratch MongoDB and verify that); with --mender,
    check that the running Mender services are healthy."""
    from ..engine import health, trial_restore
    from ..engine import verify as engine_verify
    from ..engine.repository import Repository

    rep = reporter(json_out, quiet)
    if mender:
        checked = run(rep, lambda: health.report(mender))
        show(rep, checked)
        if checked.sick:
            fail(rep, checked.sick, EXIT_FAILED)
        return
    register_url_secrets(restore_into)
    obs = observer("verify", destination, rep)
    keys, config = keyring(rep, obs), settings(rep, obs)
    if restore_into:
        r = run(rep, lambda: trial_restore.run(destination, backup_id, restore_into, rep, keys,
                                                restore_artifacts_into or None, config), obs)
    else:
        store = Repository.at(destination, config.destination_store).store
        r = run(rep, lambda: engine_verify.run(store, backup_id, deep, rep, keys), obs)
    obs.succeeded(documents=r.documents, collections=r.collections)
    r.metrics_pushed = obs.finish(0)
    show(rep, r)
