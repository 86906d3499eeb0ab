"""`helm mender-backup upgrade`, its run (the plan and the order of steps: upgrade_plan.py): the
backup that guards the upgrade, taken by a Job made from the release's backup CronJob and
verified from here; `helm upgrade`; health. A failure is UpgradeFailed: where it stopped, in
state lines, and the rollback command."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

from ..repository import Repository
from ..settings import MENDER_RELEASE
from ...errors import MenderBackupError, NotFoundError, Terminated
from ...kube import jobs, workloads
from ...kube.connection import Kube
from ...kube.helm import Helm, ReleaseInfo
from ...output import Reporter
from ...redact import scrub
from . import readiness
from .companion import companion_name, start_job
from .upgrade_plan import UpgradePlan, upgrade_args
from .values import private_file

Say = Callable[[str], None]


class UpgradeFailed(MenderBackupError):
    def __init__(self, message: str, exit_code: int, state: list[str], rollback: str | None):
        super().__init__(message, exit_code=exit_code)
        self.state = state
        self.rollback = rollback      # the command that goes back (None: nothing to go back from)


@dataclass
class GuardBackup:
    id: str
    job: str


def take_guard_backup(plan: UpgradePlan, helm: Helm, kube: Kube, reporter: Reporter, say: Say,
                      timeout: float, **wait) -> GuardBackup:
    """A Job from the release's backup CronJob, tagged for the upgrade; -> the backup, verified."""
    from .. import verify
    from ..keys import from_env
    info, ns = plan.info, plan.info.namespace
    tags = {"chart": info.chart, "chart_version": info.version, "app_version": info.app_version,
            "release": info.name, "revision": str(info.revision), "upgrade": plan.upgrade_id,
            "upgrade_to": plan.target.version}
    env = {MENDER_RELEASE[k]: v for k, v in tags.items() if v}
    job_name = start_job(kube, ns, helm.get_manifest(companion_name(info.name), namespace=ns),
                         f"upgrade-{plan.upgrade_id.lower()}", env)
    say(f"backing up: Job {ns}/{job_name} (follow it with kubectl -n {ns} logs -f job/{job_name})")
    jobs.wait_job(kube, ns, job_name, timeout, **wait)
    repo = Repository.at(plan.destination, plan.request.settings.destination_store)
    found = [e for e in repo.backups().complete if (e.manifest.mender or {}).get("upgrade") == plan.upgrade_id]
    if not found:
        raise NotFoundError(f"Job {job_name} succeeded but no complete backup at {scrub(plan.destination)} is "
                            f"tagged for upgrade {plan.upgrade_id}")
    backup_id = found[-1].id
    verify.run(repo.store, backup_id, False, reporter, from_env(plan.request.settings.environ))
    say(f"backup {backup_id} taken and verified (archive digest, every artifact present)")
    return GuardBackup(backup_id, job_name)


def run(plan: UpgradePlan, helm: Helm, kube: Kube, reporter: Reporter, say: Say, backup_timeout: float,
        ready_timeout: float) -> dict:
    info, ns = plan.info, plan.info.namespace
    rollback = f"helm mender-backup rollback {info.name} --to-upgrade {plan.upgrade_id} -n {ns}"
    state: list[str] = []
    guard = None
    try:
        guard = take_guard_backup(plan, helm, kube, reporter, say, backup_timeout)
    except BaseException as exc:
        raise _failed(plan, exc, [f"release: unchanged at revision {info.revision}; data: untouched; nothing "
                                  f"was upgraded (the upgrade needs a verified backup first)"], None) from None
    state.append(f"backup: {guard.id} guards this upgrade (revision {info.revision}, chart {info.version})")
    orphaned: dict[str, dict] = {}
    try:
        for r in plan.replaced:
            orphaned[r.name] = workloads.orphan_statefulset(kube, r.name, ns)
            say(f"deleted {r}, its pods left running (its {', '.join(r.fields)} change)")
        with private_file(plan.keys_values or "{}") as keys, private_file(plan.current_text) as current:
            helm.run(*upgrade_args(plan, str(current), str(keys) if plan.kept_keys else None), namespace=ns)
    except BaseException as exc:
        raise _failed(plan, exc, state + _put_back(kube, orphaned) + [
            f"release: the upgrade to chart {plan.target.version} failed (helm history {info.name} -n {ns}); "
            f"its migration Jobs may have changed the data",
            f"to go back to revision {info.revision} and the data of backup {guard.id}: {rollback}"], rollback) from None
    for name, old in orphaned.items():       # the new StatefulSet starts its pods once the old ones are gone
        try:
            pods = workloads.delete_orphaned_pods(kube, ns, old["spec"]["selector"].get("matchLabels") or {})
            say(f"statefulset/{name}: made anew by the upgrade; its old pods deleted ({', '.join(pods) or 'none'})")
        except MenderBackupError as exc:     # the health check below names what it keeps from starting
            say(f"statefulset/{name}: its old pods could not be deleted ({exc}): delete them yourself")
    after = ReleaseInfo.from_metadata(helm.get_metadata(info.name, namespace=ns))
    say(f"upgraded {info.name} to revision {after.revision} (chart {after.version}, Mender {after.app_version})")
    bad = readiness.check(helm, kube, after, ready_timeout, say)
    if bad:
        for w, why in sorted(bad.items()):
            say(f"  not healthy: {w}: {why}")
        raise _failed(plan, MenderBackupError(f"{len(bad)} workload(s) not healthy after {ready_timeout:.0f}s"),
                      state + [f"release: upgraded to revision {after.revision} (chart {after.version}), not healthy",
                               f"to go back to revision {info.revision} and the data of backup {guard.id}: "
                               f"{rollback}"], rollback)
    return {"upgrade": plan.upgrade_id, "backup": guard.id, "previous_revision": info.revision,
            "revision": after.revision, "chart_version": after.version, "app_version": after.app_version}


def _put_back(kube: Kube, orphaned: dict[str, dict]) -> list[str]:
    """After a failed upgrade: the StatefulSets deleted for it, back as they were; -> state lines."""
    lines = []
    for name, obj in orphaned.items():
        try:
            done = workloads.recreate_statefulset(kube, obj)
            lines.append(f"statefulset/{name}: " + ("put back as it was, its pods adopted again" if done else
                                                     "made anew by the upgrade before it failed"))
        except MenderBackupError as exc:
            lines.append(f"statefulset/{name}: deleted for the upgrade and not put back ({exc}); helm rollback "
                         f"creates it again")
    return lines


def _failed(plan: UpgradePlan, exc: BaseException, state: list[str], rollback: str | None) -> UpgradeFailed:
    from ..failures import translate
    if isinstance(exc, KeyboardInterrupt):
        exc = Terminated(signal.SIGINT)
    err = MenderBackupError(str(exc), exc.exit_code) if isinstance(exc, Terminated) else translate(exc)
    return UpgradeFailed(f"upgrade of {plan.info.name} failed: {err}", err.exit_code, state, rollback)
