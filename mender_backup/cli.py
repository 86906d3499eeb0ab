"""`mender-backup`: the command the CronJob and operators run.

Secrets (the MongoDB URL's password, S3 keys) are best passed by environment
(MONGODB_URL, AWS_*), not as arguments: process arguments are visible to every
user of the machine. Encryption keys are read from the environment only
(MENDER_BACKUP_ENCRYPTION_KEY or MENDER_BACKUP_ENCRYPTION_KEY_FILE): no option takes one.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Optional

import typer

from . import __version__, signals
from .engine.failures import translate
from .engine.lock import STALE_AFTER_SECONDS
from .engine.retention import Policy
from .errors import EXIT_CODES_HELP, EXIT_FAILED, MenderBackupError, Terminated
from .output import Reporter, backups_table, human_bytes
from .redact import register_url_secrets, scrub

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


MenderSecrets = Annotated[str, typer.Option(
    "--mender-secrets", envvar="MENDER_BACKUP_MENDER_SECRETS", show_envvar=True, show_default=False,
    help="Also store these Kubernetes Secrets holding Mender's keys (comma-separated names; a trailing ? "
         "marks one that may be absent; `default` = rsa-useradm,rsa-device-auth,rsa-tenantadm?,api-gateway?). "
         "Only with encryption.")]
MenderNamespace = Annotated[str, typer.Option(
    "--mender-namespace", envvar="MENDER_BACKUP_MENDER_NAMESPACE", show_envvar=True, show_default=False,
    help="Namespace of Mender's Secrets. Default: the kubeconfig context's (in a pod: its own).")]


def _keyring():
    from .engine import keys
    return keys.from_env()


def _keep(name: str, help_: str):
    return Annotated[int, typer.Option(f"--keep-{name}", envvar=f"MENDER_BACKUP_KEEP_{name.upper()}",
                                       show_envvar=True, min=0, help=help_)]


KeepLast = _keep("last", "Keep the N newest backups.")
KeepDaily = _keep("daily", "Keep the newest backup of each of the last N days that have one.")
KeepWeekly = _keep("weekly", "Keep the newest backup of each of the last N weeks that have one.")
KeepMonthly = _keep("monthly", "Keep the newest backup of each of the last N months that have one.")


def _reporter(json_out: bool, quiet: bool) -> Reporter:
    return Reporter("json" if json_out else "quiet" if quiet else "human")


def _fail(rep: Reporter, msg: str, code: int) -> None:
    rep.error(" ".join(scrub(msg).split()), code)     # one line, whatever the message held
    raise typer.Exit(code)


def _run(rep: Reporter, fn, obs=None, stopped: str = ""):
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
    _fail(rep, message, code)


# what a run stopped by a signal leaves, by command (README, Exit codes)
_NOTHING_KEPT = "nothing was kept from this run (partial archive removed, upload aborted, lock released)"
_RESTORE_STOPPED = ("the restore stopped part way: the target may hold part of the backup "
                    "(a rerun needs --drop)")
_PRUNE_STOPPED = "stopped part way; what was deleted stays deleted, the rest is kept; lock released"


def _observer(operation: str, destination: str, rep: Reporter):
    from .engine.observe import Observer
    return Observer(operation, destination, rep)


@app.command()
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
    from .engine import backup as engine_backup
    from .engine import prune as engine_prune
    from .engine.repository import Repository

    rep = _reporter(json_out, quiet)
    register_url_secrets(mongodb_url)
    obs = _observer("backup", destination, rep)
    policy = _run(rep, lambda: Policy(keep_last, keep_daily, keep_weekly, keep_monthly), obs)
    opts = engine_backup.BackupOptions(
        mongodb_url=mongodb_url, destination=destination, artifacts_bucket=artifacts_bucket,
        databases=list(db or []), compression=compression, parallel=parallel, break_lock=break_lock,
        lock_stale_after=lock_stale_after, keyring=_run(rep, _keyring, obs), mender_secrets=mender_secrets,
        mender_namespace=mender_namespace)
    m = _run(rep, lambda: engine_backup.run(opts, rep), obs, _NOTHING_KEPT)
    obs.succeeded(archive_bytes=m.archive.size, documents=m.document_count, artifacts=len(m.artifacts),
                  artifacts_copied=opts.stats.get("artifacts_copied", 0),
                  artifact_bytes_copied=opts.stats.get("artifact_bytes_copied", 0))

    def retention() -> None:   # after a successful backup, under a lock of its own
        try:
            engine_prune.run(Repository.at(destination), policy, rep, dry_run=False)
        except Exception as exc:
            err = translate(exc)
            raise MenderBackupError(f"backup {m.id} is complete, but applying the retention policy failed: "
                                    f"{err}", exit_code=err.exit_code) from None

    if not policy.empty:
        _run(rep, retention, obs, f"backup {m.id} is complete; {_PRUNE_STOPPED}")
    fp = m.encryption.key_fingerprint if m.encryption else None
    pushed = obs.finish(0)
    pit = m.point_in_time
    rep.result({"id": m.id, "databases": sorted(m.databases), "documents": m.document_count,
                "archive_size": m.archive.size, "artifacts": len(m.artifacts), "key_fingerprint": fp,
                "mender_secrets": m.mender_secrets.secrets if m.mender_secrets else None,
                "consistent": pit.consistent, "consistent_at": pit.end.as_json() if pit.end else None,
                "metrics_pushed": pushed},
               f"backup {m.id} complete: {m.document_count} documents in {len(m.databases)} databases, "
               f"archive {human_bytes(m.archive.size)}, {len(m.artifacts)} artifacts"
               + (f", encrypted with key {fp}" if fp else "")
               + (f", Secrets {', '.join(m.mender_secrets.secrets)}" if m.mender_secrets else "") + "; "
               + (f"consistent at {pit.end.time}" if pit.end else
                  "point-in-time consistent" if pit.consistent else "NOT point-in-time consistent"))


@app.command()
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
    from .engine import restore as engine_restore

    rep = _reporter(json_out, quiet)
    register_url_secrets(mongodb_url)
    opts = engine_restore.RestoreOptions(
        mongodb_url=mongodb_url, backup_id=backup_id, source=source, archive=archive,
        artifacts_bucket=artifacts_bucket, databases=list(db or []), drop=drop, dry_run=dry_run,
        keyring=_run(rep, _keyring), secrets=secrets, overwrite_secrets=overwrite_secrets,
        secrets_namespace=secrets_namespace,
        oplog_replay=oplog_replay, to_time=to_time, users_and_roles=restore_users_and_roles, verify=verify)
    summary = _run(rep, lambda: engine_restore.run(opts, rep), stopped=_RESTORE_STOPPED)
    rep.result(summary, engine_restore.describe(summary))


@app.command("list")
def list_(destination: Destination = "", json_out: JsonOut = False) -> None:
    """List the backups at a destination, oldest first: each complete, incomplete (no manifest) or
    unknown (its manifest unreadable, damaged or of a newer version: kept, never deleted), the time
    it is consistent at, and up to when the shipped oplog makes it restorable (restore --to-time).
    Reads only: works on a read-only destination, and without a key for plain backups."""
    from .engine.listing import listing
    from .engine.repository import Repository

    rep = _reporter(json_out, False)
    keyring = _run(rep, _keyring)
    found = _run(rep, lambda: listing(Repository.at(destination), keyring))
    for w in found.warnings():
        rep.warn(w)
    rep.result(found.rows, backups_table(found.rows))


@app.command()
def verify(
    backup_id: Annotated[str, typer.Argument(help="A backup id, or `latest`.")] = "latest",
    destination: Destination = "",
    deep: Annotated[bool, typer.Option(
        "--deep", help="Also read the whole archive: structure, CRCs, counts and content digests.")] = False,
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
    from .engine import trial_restore
    from .engine import verify as engine_verify
    from .stores import destination_store

    rep = _reporter(json_out, quiet)
    if mender:
        from .engine import health
        targets = _run(rep, lambda: health.parse_targets(mender))
        checked = health.check_all(targets)
        rep.result(health.as_json(checked), health.lines(checked))
        sick = [f"{h.service} ({h.detail})" for h in checked if not h.healthy]
        if sick:
            _fail(rep, f"{len(sick)} of {len(checked)} Mender services unhealthy: {', '.join(sick)}", EXIT_FAILED)
        return
    register_url_secrets(restore_into)
    obs = _observer("verify", destination, rep)
    keyring = _run(rep, _keyring, obs)
    if restore_into:
        result = _run(rep, lambda: trial_restore.run(destination, backup_id, restore_into, rep, keyring,
                                                     restore_artifacts_into or None), obs)
        obs.succeeded(documents=result["documents"], collections=result["collections"])
        result["metrics_pushed"] = obs.finish(0)
        rep.result(result, f"test restore of backup {result['id']} passed: {result['documents']} documents in "
                           f"{result['collections']} collections restored into {result['scratch_prefix']}*, "
                           f"verified against the manifest"
                   + (f", {result['artifacts_checked']} artifacts copied and checked"
                      if "artifacts_checked" in result else "")
                   + "; scratch databases dropped" + ("; verdict recorded" if result.get("recorded") else ""))
        return
    result = _run(rep, lambda: engine_verify.run(destination_store(destination), backup_id, deep, rep, keyring),
                  obs)
    obs.succeeded(documents=result.get("documents"), collections=result.get("collections"))
    result["metrics_pushed"] = obs.finish(0)
    enc = result.get("encryption")
    rep.result(result, f"backup {result['id']} is intact"
               + (f": {result['documents']} documents in {result['collections']} collections re-read"
                  if deep else " (checksums; --deep re-reads the contents)")
               + (f"\nencrypted with key {enc['key_fingerprint']} ({enc['algorithm']}); every segment authenticated"
                  if enc else "")
               + (f"\nMender secrets: {', '.join(result['mender_secrets'])}" if result.get("mender_secrets") else ""))


key_app = typer.Typer(help="Encryption keys: make one, or show which keys are configured (fingerprints only).",
                      no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("generate")
def key_generate() -> None:
    """Print a new random key (base64 of 32 bytes) on stdout, its fingerprint on stderr.
    Store it in a Kubernetes Secret or a 0600 file; it is never needed on a command line."""
    from .format.encryption import Key
    k = Key.generate()
    typer.echo(k.to_base64())
    typer.echo(f"fingerprint {k.fingerprint}", err=True)


@key_app.command("show")
def key_show(json_out: JsonOut = False) -> None:
    """The fingerprints of the keys in MENDER_BACKUP_ENCRYPTION_KEY(_FILE), the first being the
    one new backups are encrypted with. `verify` and `list` print the fingerprint a backup needs."""
    rep = _reporter(json_out, False)
    keyring = _run(rep, _keyring)
    fps = keyring.fingerprints
    rep.result({"keys": fps}, "\n".join(f"{fp}  {'encrypts new backups, reads' if i == 0 else 'reads'}"
                                        for i, fp in enumerate(fps)) or "no encryption key configured")


@app.command()
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
    from .engine import prune as engine_prune
    from .engine.repository import Repository

    rep = _reporter(json_out, quiet)
    policy = _run(rep, lambda: Policy(keep_last, keep_daily, keep_weekly, keep_monthly))
    r = _run(rep, lambda: engine_prune.run(Repository.at(destination), policy, rep, dry_run, break_lock),
             stopped=_PRUNE_STOPPED)
    verb = "would delete" if dry_run else "deleted"
    rep.result(r, f"kept {len(r['keep'])} backup(s); {verb} {len(r['delete'])} backup(s), "
                  f"{len(r['delete_incomplete'])} incomplete backup(s), {r['delete_artifacts']} artifact(s), "
                  f"{len(r['delete_oplog_slices'])} oplog slice(s)")


@app.command()
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
    from .engine import oplog as engine_oplog

    rep = _reporter(json_out, quiet)
    register_url_secrets(mongodb_url)
    opts = engine_oplog.OplogOptions(mongodb_url=mongodb_url, destination=destination, break_lock=break_lock,
                                     lock_stale_after=lock_stale_after, keyring=_run(rep, _keyring))
    r = _run(rep, lambda: engine_oplog.run(opts, rep), stopped=_NOTHING_KEPT)
    rep.result(r, f"shipped {r['shipped']} oplog entries" + (f" up to {r['slice']['to']['time']}" if r["slice"]
                                                            else " (nothing new)"))


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
