"""`helm mender-backup upgrade` and `rollback`: a Mender upgrade guarded by a backup, and the
way back to it (data and release together). The engine is engine/release/upgrade.py and
rollback.py; this is the parser and what the operator reads."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..engine.release import operations as ops
from ..engine.release.operations import go_duration
from ..engine.release import runbook
from ..engine.release.rollback import RollbackRequest
from ..engine.release.upgrade import UpgradeFailed
from ..engine.release.upgrade_plan import UpgradeRequest, show as show_upgrade
from ..errors import MenderBackupError
from ..output import Reporter
from ..redact import register_url_secrets
from .common import confirm, echo, say, session

RehearseURL = Annotated[Optional[str], typer.Option(
    "--rehearse-mongodb-url", envvar="MENDER_BACKUP_REHEARSE_MONGODB_URL", show_envvar=True,
    help="First restore the latest backup into this empty scratch MongoDB (reached by this machine and the pods at "
         "this URL) and run the target version's migration Jobs on it; stop if one fails. With --dry-run: only that.")]
HelmTimeout = Annotated[Optional[str], typer.Option(
    "--timeout", help="helm upgrade --timeout: how long each migration Job may run (helm's default 5m0s).")]
VALUES_HELP = ("Values files, as for helm upgrade. With none of -f/--set/--reuse-values/--reset-values the "
               "release's values are kept, as helm keeps them.")
DRY_RUN_HELP = ("Show the checks, hazards, values diff and steps; change nothing (the chart is rendered by helm's "
                "own dry run).")
CONNECT_HELP = ("How this machine reaches the release's MongoDB (e.g. through kubectl port-forward), if not by the "
                "URL in its Secret. Prefer the env var: arguments are visible to other users.")
UpgradeConnectURL = Annotated[Optional[str], typer.Option(
    "--connect-url", envvar="MENDER_BACKUP_CONNECT_MONGODB_URL", show_envvar=True,
    help=CONNECT_HELP + " Read for the schema versions and by --auto-rollback.")]


def upgrade(
    release: str = typer.Argument(..., help="The Mender release to upgrade."),
    chart: str = typer.Argument(..., help="The chart, as `helm upgrade` takes it (repo/mender, oci://..., a folder "
                                          "or an archive)."),
    version: Optional[str] = typer.Option(None, "--version", help="The chart version (helm upgrade --version)."),
    values: list[str] = typer.Option([], "--values", "-f", help=VALUES_HELP),
    set_values: list[str] = typer.Option([], "--set", help="As helm upgrade --set."),
    set_strings: list[str] = typer.Option([], "--set-string", help="As helm upgrade --set-string (after --set)."),
    reuse_values: bool = typer.Option(False, "--reuse-values", help="As helm upgrade --reuse-values."),
    reset_values: bool = typer.Option(False, "--reset-values", help="As helm upgrade --reset-values."),
    timeout: HelmTimeout = None,
    destination: Optional[str] = typer.Option(None, help="Where the backups are (default: the backup release's)."),
    connect_url: UpgradeConnectURL = None,
    force: bool = typer.Option(False, "--force", help="Allow a chart older than the deployed one."),
    rehearse_url: RehearseURL = None,
    backup_timeout: int = typer.Option(1800, "--backup-timeout", min=1, help="Seconds the guarding backup may take."),
    ready_timeout: int = typer.Option(600, "--ready-timeout", min=1,
                                      help="Seconds until every workload must be Ready after the upgrade."),
    auto_rollback: bool = typer.Option(False, "--auto-rollback", help="On a failure after the backup, roll data "
                                                                      "and release back at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Upgrade a Mender release guarded by a backup: preflight, a backup tagged for the upgrade
    (taken by the release's backup CronJob, verified), `helm upgrade` (the chart's migration
    Jobs run), then health. On a failure it says where it stopped; `helm mender-backup
    rollback` (or --auto-rollback) returns the data and the release to before the upgrade."""
    register_url_secrets(connect_url)
    register_url_secrets(rehearse_url)
    s = session()
    req = UpgradeRequest(release=release, chart=chart, version=version, values_files=values,
                         set_values=[("--set", v) for v in set_values] + [("--set-string", v) for v in set_strings],
                         reuse_values=reuse_values, reset_values=reset_values, helm_timeout=timeout,
                         destination=destination, connect_url=connect_url, force=force, settings=s.settings)
    p = ops.plan_upgrade(s, req)
    show_upgrade(p, s.helm, say, echo)
    reporter = Reporter("human")
    if rehearse_url:
        _rehearse(s, p, rehearse_url, reporter)
    if dry_run:
        say("dry run: the release was not changed")
        return
    confirm(f"Back up and upgrade {release} to chart {p.target.version}?", yes)
    try:
        result = ops.upgrade_release(s, p, reporter, say, backup_timeout, ready_timeout)
    except UpgradeFailed as failed:
        for line in failed.state:
            say(f"state: {line}")
        if not (auto_rollback and failed.rollback):
            raise
        say(f"--auto-rollback: {failed.rollback}")
        raise _rolled_back(s, failed, RollbackRequest(release, p.upgrade_id, p.destination, connect_url, s.settings),
                           reporter, ready_timeout) from None
    say(f"done: {release} runs chart {result['chart_version']} (Mender {result['app_version']}, revision "
        f"{result['revision']}), every workload Ready and every service healthy; backup {result['backup']} "
        f"guards it. To go back, data and release:")
    echo(f"helm mender-backup rollback {release} --to-upgrade {result['upgrade']} -n {p.info.namespace}")


def _rehearse(s, p, url: str, reporter: Reporter) -> None:
    outcomes = ops.rehearse(s, p, url, reporter, say, job_timeout=go_duration(p.request.helm_timeout))
    failed = [o for o in outcomes if o.failure]
    if failed:
        raise MenderBackupError(f"rehearsal: the migration {failed[0].job} of chart {p.target.version} failed on a "
                                f"copy of the data: {failed[0].failure}; the release was not touched")
    say(f"rehearsal: {len(outcomes)} migration Job(s) of chart {p.target.version} succeeded on a copy of the data"
        if outcomes else "rehearsal: the target chart runs no migration Jobs (dbmigration.enable is false)")


def _rolled_back(s, failed: UpgradeFailed, req: RollbackRequest, reporter: Reporter,
                 ready_timeout: int) -> MenderBackupError:
    """--auto-rollback: data and release back before the failed upgrade; -> the error to exit with."""
    rb = ops.plan_rollback(s, req)
    runbook.show(rb, s.helm, say, echo)
    done = ops.rollback_release(s, rb, reporter, say, 300, ready_timeout)
    health = "every workload Ready" if not done["not_ready"] else f"{len(done['not_ready'])} not healthy"
    return MenderBackupError(f"{failed}; rolled back: the data is backup {rb.manifest.id}'s, the release revision "
                             f"{rb.rollback_to}'s (now revision {done['revision']}), {health}", failed.exit_code)


def rollback(
    release: str = typer.Argument(..., help="The Mender release to roll back."),
    to_upgrade: Optional[str] = typer.Option(None, "--to-upgrade", help="The upgrade id (or its backup's id) to go "
                                                                         "back before. Default: the latest one."),
    destination: Optional[str] = typer.Option(None, help="Where the backups are (default: the backup release's)."),
    connect_url: Optional[str] = typer.Option(None, "--connect-url", envvar="MENDER_BACKUP_CONNECT_MONGODB_URL",
                                              show_envvar=True, help=CONNECT_HELP),
    stop_timeout: int = typer.Option(300, "--stop-timeout", min=1, help="Seconds to wait for Mender's pods to stop."),
    ready_timeout: int = typer.Option(600, "--ready-timeout", min=0,
                                      help="Seconds until every workload must be Ready at the end (0: do not wait)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show every step, the data plan and the values diff; "
                                                           "change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Return the data and the release to the moment before a guarded upgrade: stop Mender,
    restore the backup that guards it into the release's own MongoDB and bucket (replacing
    the collections it holds: the new version's schema changes go), `helm rollback` to the
    revision it guards, start and restart everything, check health."""
    register_url_secrets(connect_url)
    s = session()
    p = ops.plan_rollback(s, RollbackRequest(release, to_upgrade, destination, connect_url, s.settings))
    runbook.show(p, s.helm, say, echo)
    reporter = Reporter("human")
    if dry_run:
        runbook.dry_run(p, reporter, echo)
        say("dry run: nothing was changed")
        return
    confirm(f"Stop Mender, restore {p.manifest.id} into its own stores and roll {release} back to revision "
            f"{p.rollback_to}?", yes)
    result = ops.rollback_release(s, p, reporter, say, stop_timeout, ready_timeout)
    if result["not_ready"]:
        for w, why in sorted(result["not_ready"].items()):
            say(f"  not healthy: {w}: {why}")
        raise MenderBackupError(f"the data is backup {p.manifest.id}'s and {release} rolled back to revision "
                                f"{p.rollback_to} (now revision {result['revision']}), but "
                                f"{len(result['not_ready'])} workload(s) are not healthy: see "
                                f"`kubectl -n {p.namespace} get pods`")
    ready = ", every workload Ready and every service healthy" if ready_timeout else ""
    say(f"done: {release} runs revision {p.rollback_to}'s chart on the data of backup {p.manifest.id} "
        f"(now revision {result['revision']}){ready}")
