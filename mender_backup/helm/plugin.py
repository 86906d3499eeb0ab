"""`helm mender-backup`: install, run, list, restore, resume, upgrade and rollback for a Mender release.

Helm runs this with its global flags in the environment (see kube/helm.py HelmEnv) and
talks to the same cluster (kube.connection). Each command is a thin layer over the
libraries of this folder and the engine; errors are one line on stderr with the
exit codes of errors.py, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import signals
from ..engine.failures import translate
from ..engine.release import operations as ops
from ..engine.release import plan as restore_plan, runbook
from ..errors import EXIT_CODES_HELP, MenderBackupError, Terminated, UsageError
from ..output import Reporter, backups_table
from ..redact import register_url_secrets, scrub
from . import guarded
from .common import chart_dir as default_chart_dir, confirm, echo, say, session

app = typer.Typer(
    name="helm mender-backup",
    help="Back up and restore a Mender Server release (MongoDB + artifact bucket).\n\n"
         "Helm's global flags (-n, --kube-context, --kubeconfig, --debug) apply to every "
         "helm and Kubernetes call this plugin makes.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def install(
    release: str = typer.Argument(..., help="The Mender release to back up."),
    destination: str = typer.Option(..., "--destination", help="s3://bucket/prefix or file:///path"),
    schedule: Optional[str] = typer.Option(None, help="Cron schedule (default: the chart's, 03:00 daily)."),
    compression: Optional[str] = typer.Option(None, help="zstd | xz | gzip | none"),
    image: Optional[str] = typer.Option(None, help="Backup image, repository[:tag] or repository@sha256:... "
                                        "(default: the chart's, the published image)."),
    chart_dir: Optional[Path] = typer.Option(None, "--chart-dir", help="The mender-backup chart (default: the plugin's)."),
    values: list[Path] = typer.Option([], "--values", "-f", help="More values files for the backup chart."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the helm command and values; change nothing."),
) -> None:
    """Install (or upgrade) the backup CronJob as release RELEASE-backup next to RELEASE.

    The CronJob reads MongoDB and S3 settings from the very Secrets the Mender release's
    pods read (only keys they hold: with IRSA it runs as global.s3.AWS_SERVICE_ACCOUNT_NAME
    and uses no static keys). Re-run it after upgrading Mender: each backup records the
    Mender version it was taken from."""
    done = ops.install(session(), release, chart_dir or default_chart_dir(), values, dry_run, destination=destination,
                       schedule=schedule, compression=compression, image=image)
    if done.dry_run:
        echo(done.values)
    echo(done.output)


@app.command()
def run(
    release: str = typer.Argument(..., help="The Mender release."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the Job manifest here; create nothing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Job manifest; create nothing."),
) -> None:
    """Start a backup now: a one-off Job made from the release's backup CronJob,
    as `kubectl create job --from=cronjob/NAME` makes it, created through the
    Kubernetes API of helm's current context (no kubectl needed)."""
    job = ops.backup_now(session(), release, create=not (output or dry_run))
    if isinstance(job, ops.JobManifest):
        if output:
            output.write_text(job.text)
            say(f"wrote {output}: apply it with kubectl apply -f {output}")
        else:
            typer.echo(job.text, nl=False)
        return
    typer.echo(f"job.batch/{job.name} created in namespace {job.namespace}")
    say(f"follow it with: kubectl logs -n {job.namespace} -f job/{job.name}")


@app.command("list")
def list_(
    release: str = typer.Argument(..., help="The Mender release."),
    destination: Optional[str] = typer.Option(None, help="Default: the backup release's destination.url."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, as `mender-backup list --json`."),
) -> None:
    """List the backups of RELEASE (read from the destination by this machine)."""
    found = ops.backups_of(session(), release, destination)
    rep = Reporter("json" if as_json else "human")
    for w in found.warnings():
        rep.warn(w)
    rep.result(found.rows, backups_table(found.rows))


@app.command()
def restore(
    release: str = typer.Argument(..., help="The Mender release to restore and repoint."),
    backup: str = typer.Option(..., "--backup", help="Backup id, or 'latest'."),
    mongodb_url: Optional[str] = typer.Option(
        None, "--mongodb-url", envvar="MENDER_BACKUP_RESTORE_MONGODB_URL", show_envvar=True,
        help="A new MongoDB for Mender, as its pods will reach it (global.mongodb.URL). Default: restore into "
             "the release's own MongoDB. Prefer the env var: arguments are visible to other users."),
    connect_url: Optional[str] = typer.Option(
        None, "--connect-url", envvar="MENDER_BACKUP_CONNECT_MONGODB_URL", show_envvar=True,
        help="How this machine reaches the target MongoDB (e.g. through kubectl port-forward), if not by "
             "the URL Mender uses."),
    bucket: Optional[str] = typer.Option(None, "--bucket", "--container", help="A new bucket (global.s3.AWS_BUCKET) "
                                         "or Azure container (global.azure.CONTAINER_NAME). Default: the release's."),
    tenant_storage_map: Optional[list[str]] = typer.Option(
        None, "--tenant-storage-map", metavar="TENANT=BUCKET",
        help="Move the artifacts of a tenant with a store of its own into another bucket or container of that "
             "store's service; its restored storage settings name it. Repeatable. Default: where they were."),
    chart: Optional[str] = typer.Option(None, "--chart", help="Chart reference for the upgrade (default: the deployed "
                                                                "chart and version, found in local helm repos)."),
    destination: Optional[str] = typer.Option(None, help="Where the backups are (default: the backup release's)."),
    drop: bool = typer.Option(False, "--drop", help="Replace the collections the backup holds in the target."),
    force: bool = typer.Option(False, "--force", help="Restore data from a newer Mender than the release runs."),
    stop_timeout: int = typer.Option(300, "--stop-timeout", min=1, help="Seconds to wait for Mender's pods to stop."),
    ready_timeout: int = typer.Option(600, "--ready-timeout", min=0,
                                      help="Seconds to wait, at the end, until every restarted workload is Ready "
                                           "(0: do not wait)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show every step, the data plan and the values diff; "
                                                           "change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Restore a backup into a live Mender release and move the release onto it.

    Everything is checked first (chart 5.x-8.x, embedded MongoDB, existingSecrets, storage
    backend, the backup's integrity and Mender version); then Mender is stopped, the data
    restored and verified, the release upgraded (same chart version, signing keys kept,
    migrations run) and every pod restarted. A failure says where the release is left
    and how to go back."""
    # (over 60 lines: one typer.Option per option, as Typer wants; the body is short)
    register_url_secrets(mongodb_url)
    register_url_secrets(connect_url)
    s = session()
    req = restore_plan.Request(release=release, backup=backup, destination=destination, mongodb_url=mongodb_url,
                               connect_url=connect_url, bucket=bucket, chart=chart, drop=drop, force=force,
                               tenant_storage_map=list(tenant_storage_map or []), settings=s.settings)
    p = ops.plan_restore(s, req)
    runbook.show(p, s.helm, say, echo)
    reporter = Reporter("human")
    if dry_run:
        runbook.dry_run(p, reporter, echo)
        say("dry run: nothing was changed")
        return
    confirm(f"Stop Mender, restore {p.manifest.id} and upgrade {p.info.name}?", yes)
    result = ops.restore(s, p, reporter, say, stop_timeout, ready_timeout)
    back = s.rollback_command(p.info)
    if result["not_ready"]:
        for w, why in sorted(result["not_ready"].items()):
            say(f"  not Ready: {w}: {why}")
        raise MenderBackupError(
            f"the data is restored and {p.info.name} upgraded (revision {result['revision']}), but "
            f"{len(result['not_ready'])} workload(s) are not Ready after {ready_timeout}s: see "
            f"`kubectl -n {p.namespace} get pods`; to go back: {back}")
    ready = ", every workload Ready" if ready_timeout else ""
    say(f"done: {p.info.name} runs on the restored data (revision {result['revision']}){ready}. To go back:")
    echo(back)


@app.command()
def resume(
    release: str = typer.Argument(..., help="The Mender release whose workloads a restore left stopped."),
) -> None:
    """Start what a failed restore left stopped, as it was (replicas, CronJob suspension),
    and restart the pods so they read the Secrets as they are now."""
    n = ops.resume(session(), release, say)
    say(f"started {n} workload(s) again" if n else "nothing to start: no workload was left stopped by a restore")


app.command()(guarded.upgrade)
app.command()(guarded.rollback)


def main() -> None:
    signals.install()
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        typer.echo("Error: cancelled", err=True)
        sys.exit(UsageError.exit_code)
    except typer.TyperException as exc:  # bad usage: one line, not a box
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"Error: {scrub(message)} (see --help)", err=True)
        sys.exit(getattr(exc, "exit_code", UsageError.exit_code) or UsageError.exit_code)
    except (Terminated, KeyboardInterrupt) as exc:     # after the cleanup on its way up
        stop = exc if isinstance(exc, Terminated) else Terminated(signal.SIGINT)
        typer.echo(f"Error: {stop}", err=True)
        sys.exit(stop.exit_code)
    except Exception as exc:
        if os.environ.get("HELM_DEBUG", "").lower() in ("1", "true"):   # read here: Settings may be what failed
            raise
        err = translate(exc)
        typer.echo(f"Error: {' '.join(scrub(str(err)).split())}", err=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
