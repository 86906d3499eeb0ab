"""`mender-backup restore`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from ..redact import register_url_secrets
from .common import RESTORE_STOPPED, Databases, JsonOut, Quiet, keyring, reporter, run, settings, show


@dataclass
class RestoreResult:
    """The engine's restore summary (a document other callers read too), typed for printing."""
    summary: dict

    def to_json(self) -> dict:
        return self.summary

    def describe(self) -> str:
        from ..engine import restore as engine_restore
        return engine_restore.describe(self.summary)


def restore(
    backup_id: Annotated[Optional[str], typer.Argument(
        help="A backup id from `mender-backup list`, or `latest`.", show_default=False)] = None,
    mongodb_url: Annotated[str, typer.Option(
        "--mongodb-url", envvar=["MENDER_BACKUP_RESTORE_MONGODB_URL", "MONGODB_URL"], show_envvar=True,
        show_default=False, help="Target MongoDB (may differ from the source: migration).")] = "",
    source: Annotated[str, typer.Option(
        "--source", "--destination", "-d", envvar="MENDER_BACKUP_DESTINATION", show_envvar=True,
        show_default=False, help="Where the backups are: s3://bucket/prefix or file:///path.")] = "",
    archive: Annotated[Optional[str], typer.Option(
        help="Restore a plain `mongodump --archive` file instead (file:///x.archive[.xz|.gz|.zst] "
             "or s3://bucket/key); its integrity is checked by a full read first.")] = None,
    artifacts_bucket: Annotated[Optional[str], typer.Option(
        envvar=["MENDER_BACKUP_RESTORE_ARTIFACTS_BUCKET", "MENDER_BACKUP_ARTIFACTS_BUCKET"], show_envvar=True,
        help="Target bucket for the artifacts (may differ from the source).")] = None,
    tenant_storage_map: Annotated[Optional[list[str]], typer.Option(
        "--tenant-storage-map", metavar="TENANT=BUCKET", show_default=False,
        help="Put the artifacts of a tenant with a store of its own (Mender's per-tenant storage settings) "
             "into another bucket or container of that store's service, and make its restored settings name "
             "it. Repeat for each tenant. Default: back where its settings say.")] = None,
    db: Databases = None,
    drop: Annotated[bool, typer.Option(
        "--drop", help="Replace the collections this backup holds if they exist. Nothing else is dropped.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be dropped, created, copied, replayed and skipped; change nothing.")
    ] = False,
    secrets: Annotated[bool, typer.Option(
        "--secrets", help="Also put the backup's Mender key Secrets back (Kubernetes API, kubeconfig as "
                          "kubectl's). Live Secrets holding other keys are refused unless --overwrite-secrets.")] = False,
    overwrite_secrets: Annotated[bool, typer.Option(
        "--overwrite-secrets", help="With --secrets: replace live Secrets that hold other keys.")] = False,
    secrets_namespace: Annotated[str, typer.Option(
        "--secrets-namespace", envvar="MENDER_BACKUP_MENDER_NAMESPACE", show_envvar=True, show_default=False,
        help="With --secrets: the namespace to write them to. Default: the one they were read from.")] = "",
    oplog_replay: Annotated[Optional[bool], typer.Option(
        "--oplog-replay/--no-oplog-replay", show_default=False,
        help="Replay the archive's oplog after the documents. Default: yes for a consistent backup, no for a "
             "plain mongodump --oplog archive (as mongorestore --oplogReplay).")] = None,
    to_time: Annotated[Optional[str], typer.Option(
        "--to-time", show_default=False,
        help="Point-in-time recovery: restore the newest consistent backup before TIME and replay the oplog "
             "slices up to TIME (ISO 8601, UTC unless an offset is given, or an oplog timestamp seconds:ordinal).")
    ] = None,
    restore_users_and_roles: Annotated[bool, typer.Option(
        "--restore-users-and-roles",
        help="Also restore admin.system.users and admin.system.roles, merged as mongorestore does.")] = False,
    verify: Annotated[str, typer.Option(
        "--verify", envvar="MENDER_BACKUP_RESTORE_VERIFY", show_envvar=True,
        help="full: read every restored document back and compare counts and content digests with the "
             "manifest; counts: compare the server's document counts only (what mongorestore checks; faster, "
             "does not prove the contents).")] = "full",
    json_out: JsonOut = False, quiet: Quiet = False,
) -> None:
    """Restore a backup into MongoDB and an artifact bucket, then verify it.

    The archive's sha256 is checked before anything is touched (an archive on S3 is read
    once, into a temporary file under TMPDIR). A target database that holds data is
    refused unless --drop. After the restore, every collection's count and content digest
    is compared with the backup's manifest (--verify counts: the counts only).
    """
    # (over 60 lines: one Annotated parameter per option, as Typer wants; the body is 10 lines)
    from ..engine import restore as engine_restore

    rep = reporter(json_out, quiet)
    register_url_secrets(mongodb_url)
    opts = engine_restore.RestoreOptions(
        mongodb_url=mongodb_url, backup_id=backup_id, source=source, archive=archive,
        artifacts_bucket=artifacts_bucket, tenant_storage_map=list(tenant_storage_map or []),
        databases=list(db or []), drop=drop, dry_run=dry_run,
        keyring=keyring(rep), secrets=secrets, overwrite_secrets=overwrite_secrets,
        secrets_namespace=secrets_namespace,
        oplog_replay=oplog_replay, to_time=to_time, users_and_roles=restore_users_and_roles, verify=verify,
        settings=settings(rep))
    show(rep, RestoreResult(run(rep, lambda: engine_restore.run(opts, rep), stopped=RESTORE_STOPPED)))
