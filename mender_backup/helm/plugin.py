"""`helm mender-backup`: install, run, list and restore backups of a Mender release.

Helm runs this with its global flags in the environment (see release.HelmEnv).
Each command is a thin layer over release.py; errors are one line on stderr
with the exit codes of errors.py, never a traceback.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..engine import catalog
from ..engine import restore as engine_restore
from ..engine.failures import translate
from ..errors import EXIT_CODES_HELP, NotFoundError, UsageError
from ..output import Reporter, backups_table
from ..redact import redact_url, register_url_secrets, scrub
from ..stores import destination_store
from ..kube.connection import Kube
from . import companion
from . import values as yamlvalues
from .runner import Helm, HelmEnv, ReleaseInfo, redacted_argv, resolve_chart, rollback_hint, upgrade_args, upgrade_argv

app = typer.Typer(
    name="helm mender-backup",
    help="Back up and restore a Mender Server release (MongoDB + artifact bucket).\n\n"
         "Helm's global flags (-n, --kube-context, --kubeconfig, --debug) apply to every "
         "helm call this plugin makes.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# --- helpers ------------------------------------------------------------------------------

def _helm() -> Helm:
    return Helm(HelmEnv.from_env())


def _chart_dir() -> Path:
    plugin_dir = os.environ.get("HELM_PLUGIN_DIR")
    for base in ([Path(plugin_dir)] if plugin_dir else []) + [Path(__file__).resolve().parent.parent]:
        if (base / "chart" / "Chart.yaml").exists():
            return base / "chart"
    raise NotFoundError("the mender-backup chart was not found: pass --chart-dir")


def _say(text: str) -> None:
    typer.echo(scrub(text), err=True)


def _release(helm: Helm, name: str) -> ReleaseInfo:
    return ReleaseInfo.from_metadata(helm.get_metadata(name))


def _companion_destination(helm: Helm, info: ReleaseInfo) -> str:
    name = companion.companion_name(info.name)
    url = (helm.get_all_values(name, namespace=info.namespace or None).get("destination") or {}).get("url")
    if not url:
        raise NotFoundError(f"release {name} has no destination.url: pass --destination")
    return url


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("refusing to change anything without --yes: stdin is not a terminal")
    if not typer.confirm(question, default=False, err=True):
        raise UsageError("cancelled")


# --- commands -------------------------------------------------------------------------

@app.command()
def install(
    release: str = typer.Argument(..., help="The Mender release to back up."),
    destination: str = typer.Option(..., "--destination", help="s3://bucket/prefix or file:///path"),
    schedule: Optional[str] = typer.Option(None, help="Cron schedule (default: the chart's, 03:00 daily)."),
    compression: Optional[str] = typer.Option(None, help="zstd | xz | gzip | none"),
    image: Optional[str] = typer.Option(None, help="Backup image, repository[:tag]."),
    chart_dir: Optional[Path] = typer.Option(None, "--chart-dir", help="The mender-backup chart (default: the plugin's)."),
    values: list[Path] = typer.Option([], "--values", "-f", help="More values files for the backup chart."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the helm command and values; change nothing."),
) -> None:
    """Install (or upgrade) the backup CronJob as release RELEASE-backup next to RELEASE."""
    helm = _helm()
    info = _release(helm, release)
    mender = yamlvalues.load_values(helm.get_values(release, namespace=info.namespace or None))
    ours = companion.companion_values(mender, destination=destination, schedule=schedule,
                                      compression=compression, image=image)
    text = yamlvalues.dump_yaml(ours)
    chart = chart_dir or _chart_dir()
    extra = [a for f in values for a in ("-f", str(f))]

    def args(values_file: str) -> list[str]:
        return ["upgrade", "--install", companion.companion_name(release), str(chart), "-f", values_file, *extra]

    if dry_run:
        typer.echo(scrub(text))
        typer.echo(redacted_argv(helm.argv(*args("<values file>"), namespace=info.namespace or None)))
        return
    with yamlvalues.private_file(text) as path:
        out = helm.run(*args(str(path)), namespace=info.namespace or None)
    typer.echo(scrub(out))


@app.command()
def run(
    release: str = typer.Argument(..., help="The Mender release."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the Job manifest here; create nothing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Job manifest; create nothing."),
) -> None:
    """Start a backup now: a one-off Job made from the release's backup CronJob,
    as `kubectl create job --from=cronjob/NAME` makes it, created through the
    Kubernetes API of helm's current context (no kubectl needed)."""
    helm = _helm()
    info = _release(helm, release)
    manifest = helm.get_manifest(companion.companion_name(release), namespace=info.namespace or None)
    suffix = "manual-" + time.strftime("%Y%m%d%H%M%S", time.gmtime())
    if output or dry_run:
        job = companion.job_from_cronjob(manifest, suffix)
        job["metadata"].setdefault("namespace", info.namespace)
        text = yamlvalues.dump_yaml(job)
        if output:
            output.write_text(text)
            _say(f"wrote {output}: apply it with kubectl apply -f {output}")
        else:
            typer.echo(text, nl=False)
        return
    kube = Kube.from_env()
    ns = info.namespace or kube.namespace
    name = companion.cronjob_from_manifest(manifest)["metadata"]["name"]
    # the live CronJob (what the cluster would run on schedule), and its uid for the ownerReference
    with kube.call(f"reading CronJob {ns}/{name}"):
        cronjob = kube.api.sanitize_for_serialization(kube.batch.read_namespaced_cron_job(name, ns))
    job = companion.job_from_cronjob_object(cronjob, suffix)
    job["metadata"]["namespace"] = ns
    with kube.call(f"creating a Job in {ns}"):
        job_name = kube.batch.create_namespaced_job(ns, job).metadata.name
    typer.echo(f"job.batch/{job_name} created in namespace {ns}")
    _say(f"follow it with: kubectl logs -n {ns} -f job/{job_name}")


@app.command("list")
def list_(
    release: str = typer.Argument(..., help="The Mender release."),
    destination: Optional[str] = typer.Option(None, help="Default: the backup release's destination.url."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, as `mender-backup list --json`."),
) -> None:
    """List the backups of RELEASE (read from the destination by this machine)."""
    helm = _helm()
    info = _release(helm, release)
    store = destination_store(destination or _companion_destination(helm, info))
    store.check()
    rows = [e.as_dict() for e in catalog.scan(store)]
    Reporter("json" if as_json else "human").result(rows, backups_table(rows))


@app.command()
def restore(
    release: str = typer.Argument(..., help="The Mender release to restore and repoint."),
    backup: str = typer.Option(..., "--backup", help="Backup id, or 'latest'."),
    mongodb_url: Optional[str] = typer.Option(
        None, "--mongodb-url", envvar="MENDER_BACKUP_RESTORE_MONGODB_URL", show_envvar=True,
        help="MongoDB to restore into, as Mender will reach it (global.mongodb.URL). "
             "Prefer the env var: arguments are visible to other users."),
    connect_url: Optional[str] = typer.Option(
        None, "--connect-url", envvar="MENDER_BACKUP_CONNECT_MONGODB_URL",
        help="How this machine reaches that MongoDB (e.g. a port-forward), if not by --mongodb-url."),
    bucket: Optional[str] = typer.Option(None, "--bucket", help="Bucket to restore artifacts into (global.s3.AWS_BUCKET)."),
    chart: Optional[str] = typer.Option(None, "--chart", help="Chart reference for the upgrade (default: found in local repos)."),
    destination: Optional[str] = typer.Option(None, help="Where the backups are (default: the backup release's)."),
    drop: bool = typer.Option(False, "--drop", help="Drop data in the target first."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and the diff; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Restore a backup, then point the Mender release at the restored stores."""
    register_url_secrets(mongodb_url)
    register_url_secrets(connect_url)
    helm = _helm()
    info = _release(helm, release)
    info.require_deployed()
    ns = info.namespace or None
    old = helm.get_values(release, namespace=ns)
    changes = yamlvalues.plan_changes(mongodb_url, bucket)
    yamlvalues.check_rewritable(yamlvalues.load_values(old), mongodb=bool(mongodb_url), bucket=bool(bucket))
    new = yamlvalues.rewrite_values(old, changes) if changes else old
    upgrade = new != old
    chart_ref = resolve_chart(helm, info, chart) if upgrade else None
    dest = destination or _companion_destination(helm, info)

    target = redact_url(mongodb_url) if mongodb_url else "the release's MongoDB"
    _say(f"Plan for release {info.name} (namespace {info.namespace}, chart {info.chart} {info.version}, "
         f"revision {info.revision}):")
    _say(f"  1. restore backup {backup} from {dest} into {target}"
         f"{' and bucket ' + bucket if bucket else ''}{' (dropping existing data)' if drop else ''}")
    if upgrade:
        _say("  2. " + redacted_argv(upgrade_argv(helm, info, chart_ref, "<values file>")))
        typer.echo(yamlvalues.values_diff(old, new), nl=False)
    else:
        _say("  2. no change to the release: it already points at these stores")
    opts = engine_restore.RestoreOptions(
        mongodb_url=connect_url or mongodb_url or os.environ.get("MONGODB_URL", ""), backup_id=backup,
        source=dest, artifacts_bucket=bucket, drop=drop, dry_run=dry_run)
    reporter = Reporter("human")
    if dry_run:
        engine_restore.run(opts, reporter)
        _say("dry run: nothing was changed")
        return
    _confirm(f"Restore {backup} and upgrade {info.name}?", yes)
    engine_restore.run(opts, reporter)
    if not upgrade:
        return
    with yamlvalues.private_file(new) as path:
        helm.run(*upgrade_args(info, chart_ref, path), namespace=ns)
    _say(f"upgraded {info.name}; the previous revision is {info.revision}. To go back:")
    typer.echo(rollback_hint(helm, info))


def main() -> None:
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
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("HELM_DEBUG", "").lower() in ("1", "true"):
            raise
        err = translate(exc)
        typer.echo(f"Error: {' '.join(scrub(str(err)).split())}", err=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
