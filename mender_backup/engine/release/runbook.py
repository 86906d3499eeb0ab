"""Carrying out a restore plan on a live Mender release, step by step:

 1. stop: every workload of the release (and our backup CronJob) scaled to 0 or
    suspended, what it ran recorded on the object itself; wait until no pod runs;
 2. restore the data (the engine: archive checked first, verified after);
 3. update the Secrets Mender reads when the release takes them from existingSecrets
    (their previous content saved to a 0600 file first: helm rollback cannot undo it);
 4. `helm upgrade` with the same chart version and the user's values plus the changes,
    the signing keys carried over: always, even with nothing changed, so the release's
    migration Jobs (pre-upgrade hooks) run on the restored data;
 5. start everything again as it was, and restart every pod (rollout restart): Mender
    reads its Secrets through envFrom, so only new pods see the new stores.

A failure stops the run and says exactly where the release is and how to go back.
Workloads are started again when that is safe (Mender's database and values are as
they were); when the data under the running Mender was changed, or its values may
be half-applied, they stay stopped and the report gives the commands.
"""

from __future__ import annotations

import base64
import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import restore as engine_restore
from ...errors import MenderBackupError, NotFoundError, Terminated
from ...kube import secrets as kube_secrets
from ...kube import workloads
from ...kube.connection import Kube
from ...output import Reporter
from ...redact import redact_url, scrub
from .plan import Plan, describe_target
from ...kube.helm import Helm, rollback_hint, upgrade_args, upgrade_argv
from .values import dump_yaml, private_file
from .values_diff import values_diff

Say = Callable[[str], None]


@dataclass
class Progress:
    stopped: list = field(default_factory=list)
    data_started: bool = False
    data_done: bool = False
    secrets_file: Path | None = None
    secrets_changed: list[str] = field(default_factory=list)
    upgrade_started: bool = False
    revision: int | None = None


class RestoreFailed(MenderBackupError):
    """A step failed; the message is the step's one line, `state` what the release is left as."""

    def __init__(self, message: str, exit_code: int, state: list[str]):
        super().__init__(message, exit_code=exit_code)
        self.state = state


def show(plan: Plan, helm: Helm, say: Say, echo: Say) -> None:
    """The plan, for the operator to approve: every step, secrets redacted."""
    info, m = plan.info, plan.manifest
    say(f"Plan for release {info.name} (namespace {info.namespace}, chart {info.chart} {info.version}, "
        f"Mender {info.app_version or '?'}, revision {info.revision}):")
    steps: list[str] = []
    stops = ", ".join(f"{w} ({'suspend' if w.kind == 'CronJob' else f'{w.replicas} -> 0'})" for w in plan.workloads)
    steps.append(f"stop {stops or 'nothing (no workloads found)'}; wait until no pod runs")
    steps.append(f"restore backup {m.id} (taken {m.created_at}, {m.document_count} documents, {len(m.artifacts)} "
                 f"artifacts) from {redact_url(plan.destination)} into {describe_target(plan)}"
                 + (f" and bucket {plan.target_bucket}" if plan.target_bucket else "")
                 + (" (replacing the collections the backup holds)" if plan.request.drop else ""))
    for c in plan.secret_changes:
        steps.append(f"set {', '.join(sorted(c.values))} in Secret {c.name} ({c.why}); its previous content is "
                     f"saved to a 0600 file first")
    if plan.rollback_to is not None:
        guarded = plan.manifest.mender
        steps.append(" ".join(helm.argv("rollback", info.name, str(plan.rollback_to), namespace=info.namespace or None))
                     + f"  (back to chart {guarded.get('chart_version', '?')}, Mender {guarded.get('app_version', '?')}: "
                       f"the revision backup {m.id} guards)")
    else:
        upgrade = (" ".join(scrub(a) for a in upgrade_argv(helm, info, plan.chart_ref, "<values file>"))
                   + f"  (chart {info.version} as deployed; migration Jobs "
                   + ("run" if plan.mender.migrations else "disabled in the release") + ")")
        steps.append("\n".join([upgrade] + [f"     {svc}.certs.key from {source}: the signing key is kept, not "
                                             f"regenerated" for svc, source in plan.kept_keys.items()]))
    steps.append(f"start again as before and restart: {', '.join(str(w) for w in plan.workloads) or 'nothing'}")
    for n, step in enumerate(steps, 1):
        say(f"  {n}. {step}")
    for note in plan.notes:
        say(f"  note: {note}")
    diff = values_diff(plan.user_values, plan.new_values,
                       after=f"revision {plan.rollback_to}" if plan.rollback_to is not None else "after restore")
    if diff:
        echo(diff.rstrip("\n"))
    else:
        say("  values: unchanged (the upgrade still runs, for the migrations and a clean restart)")


def describe_result(result: dict) -> str:
    """One restore's outcome in a few lines (the dry run lists every collection)."""
    colls = result["create"]
    docs = sum(c["documents"] for c in colls)
    a = result.get("artifacts")
    lines = [f"restored backup {result['backup']}: {docs} documents in {len(colls)} collections"
             + (f", {a['copy']} artifacts copied ({a['already_present']} already there)" if a else "")
             + "; verified: counts and content digests match the backup"]
    lines += [f"  expired {ns}: {n} documents past their TTL (MongoDB's TTL monitor deletes them within a minute)"
              for ns, n in sorted((result.get("expired") or {}).items())]
    lines += [f"  skipped {k['namespace']} ({k['reason']})" for k in result.get("skipped") or []]
    return "\n".join(lines)


def _restore_options(plan: Plan, dry_run: bool) -> engine_restore.RestoreOptions:
    return engine_restore.RestoreOptions(
        mongodb_url=plan.connect_url, backup_id=plan.manifest.id, source=plan.destination,
        artifacts_bucket=plan.target_bucket, drop=plan.request.drop, dry_run=dry_run,
        tenant_storage_map=plan.request.tenant_storage_map, settings=plan.request.settings)


def dry_run(plan: Plan, reporter: Reporter, echo: Say) -> None:
    summary = engine_restore.run(_restore_options(plan, True), reporter)
    echo(engine_restore.describe(summary))


def run(plan: Plan, helm: Helm, kube: Kube, reporter: Reporter, say: Say,
        stop_timeout: float = 300.0, ready_timeout: float = 600.0) -> dict:
    p = Progress()
    try:
        for w in plan.workloads:
            workloads.quiesce(kube, w)
            p.stopped.append(w)
        say(f"stopped {len(p.stopped)} workload(s); waiting until no pod runs")
        workloads.wait_stopped(kube, plan.workloads, stop_timeout)

        p.data_started = True
        summary = engine_restore.run(_restore_options(plan, False), reporter)
        p.data_done = True
        say(describe_result(summary))

        if plan.secret_changes:
            p.secrets_file = _save_secrets(kube, plan)
            for c in plan.secret_changes:
                kube_secrets.set_keys(kube, plan.namespace, c.name, c.values)
                p.secrets_changed.append(c.name)
                say(f"updated Secret {c.name}: {', '.join(sorted(c.values))}")

        p.upgrade_started = True
        if plan.rollback_to is not None:
            # server-side apply (Helm 4): the stop changed spec.replicas as another field manager
            force = ["--force-conflicts"] if plan.info.apply_method == "ssa" else []
            helm.run("rollback", plan.info.name, str(plan.rollback_to), *force, namespace=plan.namespace)
            p.revision = plan.info.revision + 1
            say(f"rolled {plan.info.name} back to revision {plan.rollback_to} (now revision {p.revision})")
        else:
            with private_file(plan.new_values) as path:
                helm.run(*upgrade_args(plan.info, plan.chart_ref, path), namespace=plan.namespace)
            p.revision = plan.info.revision + 1
            say(f"upgraded {plan.info.name} to revision {p.revision} (chart {plan.info.version})")

        restarted_at = workloads.now_rfc3339()
        for w in plan.workloads:
            try:
                did = workloads.resume(kube, w, restarted_at if w.kind in workloads.SCALABLE else None)
            except NotFoundError:
                if plan.rollback_to is None:
                    raise
                did = f"removed by the rollback (revision {plan.rollback_to} has no such workload)"
            say(f"{w}: {did}")
    except BaseException as exc:
        raise _failed(plan, helm, kube, p, exc, say) from None
    # the restore is done; whether Mender came up on it is the last thing an operator asks
    not_ready = {}
    if plan.rollback_to is not None:       # the workloads are revision N's now: the caller checks them
        ready_timeout = 0
    if ready_timeout > 0:
        say(f"waiting up to {ready_timeout:.0f}s until every workload has rolled out and stays Ready for 20s")
        not_ready = workloads.wait_ready(kube, plan.workloads, ready_timeout)
    return {"backup": plan.manifest.id, "revision": p.revision, "previous_revision": plan.info.revision,
            "restarted_at": restarted_at, "data": summary, "not_ready": not_ready}


def _failed(plan: Plan, helm: Helm, kube: Kube, p: Progress, exc: BaseException, say: Say) -> RestoreFailed:
    from ..failures import translate
    if isinstance(exc, KeyboardInterrupt):
        exc = Terminated(signal.SIGINT)
    # a signal: the release's state is still put right and said below, then the exit is 143/130
    err = MenderBackupError(str(exc), exc.exit_code) if isinstance(exc, Terminated) else translate(exc)
    name, ns = plan.info.name, plan.namespace
    rollback = rollback_hint(helm, plan.info)
    resume = f"helm mender-backup resume {name} -n {ns}"
    state: list[str] = []
    # the running Mender is safe to start again when its database and its values are as they were
    live_data_changed = p.data_started and not plan.repoints_mongodb
    values_touched = p.upgrade_started or bool(p.secrets_changed)
    if not p.data_started:
        state.append("data: untouched")
    elif not p.data_done:
        state.append("data: the restore stopped part way: " + (
            "the release's own database may be incomplete" if live_data_changed else
            f"the new database {redact_url(plan.request.mongodb_url or '')} is incomplete; Mender's is untouched"))
    else:
        state.append("data: restored and verified")
    if p.secrets_changed:
        state.append(f"Secrets changed: {', '.join(p.secrets_changed)}; their previous content is in "
                     f"{p.secrets_file} (kubectl apply -f {p.secrets_file} puts it back)")
    if p.upgrade_started and plan.rollback_to is not None:
        state.append(f"release: helm rollback to revision {plan.rollback_to} failed (helm history {name} -n {ns}); "
                     f"the data is the guarded backup's: run the same rollback again")
    elif p.upgrade_started:
        state.append(f"release: the upgrade failed; {rollback} returns to revision {plan.info.revision}")
    else:
        state.append(f"release: unchanged at revision {plan.info.revision}")
    if p.stopped and not live_data_changed and not values_touched:
        for w in p.stopped:
            try:
                workloads.resume(kube, w)
            except Exception as again:
                state.append(f"could not start {w} again ({translate(again)}): run {resume}")
                break
        else:
            state.append(f"workloads: started again as they were ({len(p.stopped)})")
    elif p.stopped:
        state.append(f"workloads: left stopped ({', '.join(map(str, p.stopped))}) so that Mender does not run "
                     f"on {'a half-restored database' if not values_touched else 'half-applied settings'}; "
                     f"to start them as they were: {resume}")
    for line in state:
        say(f"state: {line}")
    what = "rollback" if plan.rollback_to is not None else "restore"
    return RestoreFailed(f"{what} of {plan.info.name} failed: {err}", err.exit_code, state)


def _save_secrets(kube: Kube, plan: Plan) -> Path:
    """The Secrets about to change, as a manifest `kubectl apply -f` restores (0600)."""
    docs = []
    for c in plan.secret_changes:
        data = kube_secrets.decoded(kube, plan.namespace, c.name)
        docs.append(dump_yaml({"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": c.name, "namespace": plan.namespace},
                               "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    fd, name = tempfile.mkstemp(prefix=f"mender-backup-{plan.info.name}-secrets-{stamp}-", suffix=".yaml",
                                dir=plan.request.settings.state_dir)
    with os.fdopen(fd, "w") as fh:
        fh.write("---\n".join(docs))
    return Path(name)


def resume_release(kube: Kube, namespace: str, say: Say) -> int:
    """`helm mender-backup resume`: start whatever a restore left stopped, as it was."""
    stopped = workloads.quiesced(kube, namespace)
    restarted_at = workloads.now_rfc3339()
    for w in stopped:
        say(f"{w}: {workloads.resume(kube, w, restarted_at if w.kind in workloads.SCALABLE else None)}")
    return len(stopped)
