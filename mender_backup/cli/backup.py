"""`mender-backup backup`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..engine.lock import STALE_AFTER_SECONDS
from ..engine.retention import Policy
from ..redact import register_url_secrets
from .common import (NOTHING_KEPT, PRUNE_STOPPED, BreakLock, Databases, Destination, JsonOut, KeepDaily,
                     KeepLast, KeepMonthly, KeepWeekly, LockStaleAfter, MongoURL, Quiet, keyring, observer,
                     reporter, run, settings, show)

MenderSecrets = Annotated[str, typer.Option(
    "--mender-secrets", envvar="MENDER_BACKUP_MENDER_SECRETS", show_envvar=True, show_default=False,
    help="Also store these Kubernetes Secrets holding Mender's keys (comma-separated names; a trailing ? "
         "marks one that may be absent; `default` = rsa-useradm,rsa-device-auth,rsa-tenantadm?,api-gateway?). "
         "Only with encryption.")]
MenderNamespace = Annotated[str, typer.Option(
    "--mender-namespace", envvar="MENDER_BACKUP_MENDER_NAMESPACE", show_envvar=True, show_default=False,
    help="Namespace of Mender's Secrets. Default: the kubeconfig context's (in a pod: its own).")]


def backup(
    mongodb_url: MongoURL = "",
    destination: Destination = "",
    artifacts_bucket: Annotated[Optional[str], typer.Option(
        envvar="MENDER_BACKUP_ARTIFACTS_BUCKET", show_envvar=True,
        help="The Mender artifact bucket to back up (S3 settings from AWS_*). Omit to skip artifacts.")] = None,
    db: Databases = None,
    compression: Annotated[str, typer.Option(
        envvar="MENDER_BACKUP_COMPRESSION", show_envvar=True, help="zstd, xz, gzip or none.")] = "zstd",
    parallel: Annotated[int, typer.Option(min=1, max=32, help="Collections dumped at once.")] = 4,
    keep_last: KeepLast = 0, keep_daily: KeepDaily = 0, keep_weekly: KeepWeekly = 0,
    keep_monthly: KeepMonthly = 0,
    break_lock: BreakLock = False,
    lock_stale_after: LockStaleAfter = int(STALE_AFTER_SECONDS),
    mender_secrets: MenderSecrets = "", mender_namespace: MenderNamespace = "",
    json_out: JsonOut = False, quiet: Quiet = False,
) -> None:
    """Back up every Mender database and the artifact bucket to a destination.

    The archive is written first, then new artifacts are copied, then manifest.json:
    a backup without its manifest is incomplete and is never restored. With --keep-*,
    the retention policy is applied after a successful backup.
    """
    from ..engine import backup as engine_backup
    from ..engine import prune as engine_prune
    from ..engine.repository import Repository

    rep = reporter(json_out, quiet)
    register_url_secrets(mongodb_url)
    obs = observer("backup", destination, rep)
    policy = run(rep, lambda: Policy(keep_last, keep_daily, keep_weekly, keep_monthly), obs)
    opts = engine_backup.BackupOptions(
        mongodb_url=mongodb_url, destination=destination, artifacts_bucket=artifacts_bucket,
        databases=list(db or []), compression=compression, parallel=parallel, break_lock=break_lock,
        lock_stale_after=lock_stale_after, keyring=keyring(rep, obs), mender_secrets=mender_secrets,
        mender_namespace=mender_namespace, settings=settings(rep, obs))
    r = run(rep, lambda: engine_backup.run(opts, rep), obs, NOTHING_KEPT)
    m = r.manifest
    obs.succeeded(archive_bytes=m.archive.size, documents=m.document_count, artifacts=len(m.artifacts),
                  artifacts_copied=r.artifacts_copied, artifact_bytes_copied=r.artifact_bytes_copied)
    if not policy.empty:
        repo = Repository.at(destination, opts.settings.destination_store)
        run(rep, lambda: engine_prune.after_backup(repo, policy, rep, m.id), obs,
            f"backup {m.id} is complete; {PRUNE_STOPPED}")
    r.metrics_pushed = obs.finish(0)
    show(rep, r)
