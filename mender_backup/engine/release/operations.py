"""What `helm mender-backup` does, one engine call per command, so that the plugin stays a
parser (tests/test_layers.py: the front ends reach Kubernetes, helm and the stores only
through here). Each call takes the Settings the plugin read once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ...kube import secrets as kube_secrets
from ...kube.connection import Kube
from ...kube.helm import Helm, HelmEnv, ReleaseInfo, go_duration, redacted_argv
from ...output import Reporter
from ..listing import Listing, listing
from ..repository import Repository
from ..settings import Settings
from . import chart, companion, plan as restore_plan, readiness, rehearsal, rollback, runbook, upgrade, upgrade_plan
from .azure_location import azure_location
from .values import dump_yaml, private_file

__all__ = ["Session", "Installed", "JobStarted", "JobManifest", "open_session", "go_duration"]


@dataclass
class Session:
    """helm (with helm's global flags) and the Kubernetes API, as the plugin was started."""
    settings: Settings
    helm: Helm
    _kube: Kube | None = None

    @property
    def kube(self) -> Kube:
        if self._kube is None:       # only the commands that need the API connect to it
            self._kube = Kube.from_env(self.settings.environ)
        return self._kube

    def release(self, name: str) -> ReleaseInfo:
        return ReleaseInfo.from_metadata(self.helm.get_metadata(name))

    def rollback_command(self, info: ReleaseInfo) -> str:
        """The command that puts `info`'s release back to the revision it has now."""
        return " ".join(self.helm.argv("rollback", info.name, str(info.revision), namespace=info.namespace or None))


def open_session(settings: Settings) -> Session:
    return Session(settings, Helm(HelmEnv.from_env(settings.environ)))


@dataclass
class Installed:
    """`install`: the values given to our chart and helm's output (or, dry run, the command)."""
    values: str
    output: str
    dry_run: bool


def install(s: Session, release: str, chart_dir: Path, extra_values: list[Path], dry_run: bool,
            **choices: str | None) -> Installed:
    """Our CronJob chart as release RELEASE-backup, reading the Mender release's own Secrets.
    `choices`: destination, schedule, compression, image (companion.companion_values)."""
    info = s.release(release)
    chart.check_supported(info)
    ns = info.namespace
    mv = chart.MenderValues(s.helm.get_all_values(release, namespace=ns), chart.major(info))
    keys = chart.SecretKeys(kube_secrets.keys(s.kube, ns, mv.mongodb_secret),
                            kube_secrets.keys(s.kube, ns, mv.s3_secret))
    azure = azure_location(s.kube, ns, mv) if mv.storage == "azure" else None
    text = dump_yaml(companion.companion_values(info, mv, keys, azure=azure, **choices))
    extra = [a for f in extra_values for a in ("-f", str(f))]

    def args(values_file: str) -> list[str]:
        return ["upgrade", "--install", companion.companion_name(release), str(chart_dir), "-f", values_file, *extra]

    if dry_run:
        return Installed(text, redacted_argv(s.helm.argv(*args("<values file>"), namespace=ns or None)), True)
    with private_file(text) as path:
        return Installed(text, s.helm.run(*args(str(path)), namespace=ns or None), False)


@dataclass
class JobManifest:
    """`run --dry-run/--output`: the Job a backup now would be, not created."""
    text: str


@dataclass
class JobStarted:
    name: str
    namespace: str


def backup_now(s: Session, release: str, create: bool) -> JobStarted | JobManifest:
    """A one-off Job from the release's backup CronJob (`kubectl create job --from=cronjob/...`)."""
    info = s.release(release)
    manifest = s.helm.get_manifest(companion.companion_name(release), namespace=info.namespace or None)
    suffix = "manual-" + time.strftime("%Y%m%d%H%M%S", time.gmtime())
    if not create:
        job = companion.job_from_cronjob(manifest, suffix)
        job["metadata"].setdefault("namespace", info.namespace)
        return JobManifest(dump_yaml(job))
    ns = info.namespace or s.kube.namespace
    return JobStarted(companion.start_job(s.kube, ns, manifest, suffix), ns)


def backups_of(s: Session, release: str, destination: str | None) -> Listing:
    """The backups of RELEASE, as `mender-backup list` shows them (the same rows)."""
    from ..keys import from_env
    info = s.release(release)
    repo = Repository.at(destination or companion.companion_destination(s.helm, info), s.settings.destination_store)
    return listing(repo, from_env(s.settings.environ))


def plan_restore(s: Session, req: restore_plan.Request) -> restore_plan.Plan:
    """Everything read and checked; nothing changed (a refusal is one line)."""
    return restore_plan.build(s.helm, s.kube, req)


def restore(s: Session, p: restore_plan.Plan, reporter: Reporter, say, stop_timeout: float,
            ready_timeout: float) -> dict:
    """Stop, restore, repoint, upgrade, restart (runbook.py); a failure says where it stopped."""
    return runbook.run(p, s.helm, s.kube, reporter, say, stop_timeout, ready_timeout)


def resume(s: Session, release: str, say) -> int:
    """Start what a failed restore left stopped; -> how many workloads."""
    return runbook.resume_release(s.kube, s.release(release).namespace, say)


def plan_upgrade(s: Session, req: upgrade_plan.UpgradeRequest) -> upgrade_plan.UpgradePlan:
    """The guarded upgrade, read and checked (the chart renders, in a dry run); nothing changed."""
    return upgrade_plan.build(s.helm, s.kube, req)


def upgrade_release(s: Session, p: upgrade_plan.UpgradePlan, reporter: Reporter, say, backup_timeout: float,
                    ready_timeout: float) -> dict:
    """Back up (tagged, verified), upgrade, check health; a failure is upgrade.UpgradeFailed."""
    return upgrade.run(p, s.helm, s.kube, reporter, say, backup_timeout, ready_timeout)


def rehearse(s: Session, p: upgrade_plan.UpgradePlan, url: str, reporter: Reporter, say,
             job_timeout: float) -> list[rehearsal.Outcome]:
    """The target version's migrations on a copy of the latest backup in a scratch MongoDB."""
    return rehearsal.run(p, s.kube, url, reporter, say, job_timeout)


def plan_rollback(s: Session, req: rollback.RollbackRequest) -> restore_plan.Plan:
    """The guarded backup found and every store checked; nothing changed."""
    return rollback.build(s.helm, s.kube, req)


def rollback_release(s: Session, p: restore_plan.Plan, reporter: Reporter, say, stop_timeout: float,
                     ready_timeout: float) -> dict:
    """Stop, restore the guarded backup, helm rollback, restart (runbook.py), then health."""
    result = runbook.run(p, s.helm, s.kube, reporter, say, stop_timeout, 0)
    after = s.release(p.info.name)
    result["not_ready"] = readiness.check(s.helm, s.kube, after, ready_timeout, say) if ready_timeout else {}
    return result
