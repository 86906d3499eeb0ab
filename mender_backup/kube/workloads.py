"""Stopping a release's workloads for a restore and starting them again.

Quiescing scales each Deployment and StatefulSet to 0 and suspends each CronJob,
and writes what it changed into an annotation of the object itself: the state of
a restore is then in the cluster, readable by `kubectl get -o yaml`, and a resume
(also by a later run, after a crash) puts back exactly what was there. A resume
can also restart the pods as `kubectl rollout restart` does, so every pod reads the
Secrets as they are now (Mender reads them through envFrom: a Secret change alone
restarts nothing).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import ConflictError, MenderBackupError
from .connection import Kube

# what the restore changed, on the object: {"replicas": N} or {"suspend": false}
QUIESCED = "mender-backup.io/quiesced"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"   # the annotation `kubectl rollout restart` sets
SCALABLE = ("Deployment", "StatefulSet")


@dataclass
class Workload:
    kind: str            # Deployment | StatefulSet | CronJob
    name: str
    namespace: str
    replicas: int = 0    # Deployment/StatefulSet: what it runs (before quiescing)
    suspended: bool = False

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


def _api(kube: Kube, kind: str):
    read = {"Deployment": kube.apps.read_namespaced_deployment,
            "StatefulSet": kube.apps.read_namespaced_stateful_set,
            "CronJob": kube.batch.read_namespaced_cron_job}[kind]
    patch = {"Deployment": kube.apps.patch_namespaced_deployment,
             "StatefulSet": kube.apps.patch_namespaced_stateful_set,
             "CronJob": kube.batch.patch_namespaced_cron_job}[kind]
    return read, patch


def read(kube: Kube, kind: str, name: str, namespace: str) -> tuple[Workload, dict]:
    """The workload as it is now, and what a quiesce recorded on it (or {})."""
    get, _ = _api(kube, kind)
    with kube.call(f"reading {kind} {namespace}/{name}"):
        obj = get(name, namespace)
    recorded = json.loads((obj.metadata.annotations or {}).get(QUIESCED) or "{}")
    if kind == "CronJob":
        return Workload(kind, name, namespace, suspended=bool(obj.spec.suspend)), recorded
    return Workload(kind, name, namespace, replicas=obj.spec.replicas or 0), recorded


def quiesce(kube: Kube, w: Workload) -> None:
    """Scale to 0 / suspend, remembering the previous state on the object. A workload
    already quiesced by an earlier, unfinished restore keeps its first record."""
    _, patch = _api(kube, w.kind)
    current, recorded = read(kube, w.kind, w.name, w.namespace)
    if not recorded:
        recorded = {"suspend": current.suspended} if w.kind == "CronJob" else {"replicas": current.replicas}
    spec = {"suspend": True} if w.kind == "CronJob" else {"replicas": 0}
    body = {"metadata": {"annotations": {QUIESCED: json.dumps(recorded)}}, "spec": spec}
    with kube.call(f"stopping {w.kind} {w.namespace}/{w.name}"):
        patch(w.name, w.namespace, body)


def resume(kube: Kube, w: Workload, restart_at: str | None = None) -> str:
    """Put back what quiesce recorded (nothing, if it recorded nothing); with
    `restart_at`, also restart the pods. Returns what it did, for the report."""
    _, patch = _api(kube, w.kind)
    _, recorded = read(kube, w.kind, w.name, w.namespace)
    body: dict = {"metadata": {"annotations": {QUIESCED: None}}, "spec": {}}
    did = []
    if w.kind == "CronJob":
        if recorded:
            body["spec"]["suspend"] = bool(recorded.get("suspend", False))
            did.append("unsuspended" if not body["spec"]["suspend"] else "left suspended (as it was)")
    else:
        if recorded:
            body["spec"]["replicas"] = int(recorded.get("replicas", 0))
            did.append(f"scaled to {body['spec']['replicas']}")
        if restart_at:
            body["spec"]["template"] = {"metadata": {"annotations": {RESTARTED_AT: restart_at}}}
            did.append("restarted")
    if not recorded and not restart_at:
        return "unchanged"
    with kube.call(f"starting {w.kind} {w.namespace}/{w.name}"):
        patch(w.name, w.namespace, body)
    return ", ".join(did)


def orphan_statefulset(kube: Kube, name: str, namespace: str) -> dict:
    """Delete a StatefulSet, leaving its pods running; -> the object as it was (for `recreate`)."""
    with kube.call(f"reading StatefulSet {namespace}/{name}"):
        obj = kube.api.sanitize_for_serialization(kube.apps.read_namespaced_stateful_set(name, namespace))
    with kube.call(f"deleting StatefulSet {namespace}/{name}"):
        kube.apps.delete_namespaced_stateful_set(name, namespace, propagation_policy="Orphan")
    return obj


def recreate_statefulset(kube: Kube, obj: dict) -> bool:
    """Put back a StatefulSet `orphan_statefulset` removed (it adopts its pods again); False
    when one of that name exists already."""
    meta = {k: v for k, v in obj["metadata"].items()
            if k not in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")}
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": obj["spec"]}
    try:
        with kube.call(f"creating StatefulSet {meta['namespace']}/{meta['name']}"):
            kube.apps.create_namespaced_stateful_set(meta["namespace"], body)
    except ConflictError:
        return False
    return True


def delete_orphaned_pods(kube: Kube, namespace: str, match_labels: dict) -> list[str]:
    """The pods a deleted StatefulSet left (its selector, no owner): deleted; -> their names."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
    with kube.call(f"listing pods in {namespace}"):
        pods = kube.core.list_namespaced_pod(namespace, label_selector=selector).items
    gone = []
    for pod in pods:
        if not pod.metadata.owner_references:
            with kube.call(f"deleting pod {namespace}/{pod.metadata.name}"):
                kube.core.delete_namespaced_pod(pod.metadata.name, namespace)
            gone.append(pod.metadata.name)
    return gone


def quiesced(kube: Kube, namespace: str) -> list[Workload]:
    """Every workload of the namespace that a restore stopped and did not start again."""
    out = []
    with kube.call(f"listing workloads in {namespace}"):
        for kind, items in (("Deployment", kube.apps.list_namespaced_deployment(namespace).items),
                            ("StatefulSet", kube.apps.list_namespaced_stateful_set(namespace).items),
                            ("CronJob", kube.batch.list_namespaced_cron_job(namespace).items)):
            for obj in items:
                if QUIESCED in (obj.metadata.annotations or {}):
                    out.append(Workload(kind, obj.metadata.name, namespace))
    return out


def wait_stopped(kube: Kube, workloads: list[Workload], timeout: float, poll: float = 1.0) -> None:
    """Until no pod of these Deployments/StatefulSets runs (their status says 0)."""
    deadline = time.monotonic() + timeout
    pending = [w for w in workloads if w.kind in SCALABLE]
    while pending:
        still = []
        for w in pending:
            get, _ = _api(kube, w.kind)
            with kube.call(f"reading {w.kind} {w.namespace}/{w.name}"):
                status = get(w.name, w.namespace).status
            if status is not None and (status.replicas or 0) > 0:
                still.append(w)
        pending = still
        if not pending:
            return
        if time.monotonic() > deadline:
            raise MenderBackupError(f"{', '.join(map(str, pending))} still running pods after {timeout:.0f}s: "
                                    f"nothing was restored")
        time.sleep(poll)


def _not_ready(kube: Kube, w: Workload) -> str | None:
    """Why the workload has not rolled out (`kubectl rollout status`'s test), or None."""
    get, _ = _api(kube, w.kind)
    with kube.call(f"reading {w.kind} {w.namespace}/{w.name}"):
        obj = get(w.name, w.namespace)
    want, st = obj.spec.replicas or 0, obj.status
    if st is None or (st.observed_generation or 0) < (obj.metadata.generation or 0):
        return "its change is not observed yet"
    updated, ready = st.updated_replicas or 0, st.ready_replicas or 0
    if updated < want or ready < want or (st.replicas or 0) > want:
        return f"{ready}/{want} ready, {updated} updated"
    return None


def wait_ready(kube: Kube, workloads: list[Workload], timeout: float, poll: float = 2.0, settle: float = 20.0,
               clock=time.monotonic, sleep=time.sleep) -> dict[str, str]:
    """Until every Deployment/StatefulSet has rolled out with all its pods Ready, and all
    have stayed so for `settle` seconds: a pod that fails soon after it starts (Mender's
    workflows worker while NATS has no stream yet) is Ready for a moment. Returns what is
    not Ready ({"deployment/x": "0/1 ready, 1 updated"}) when `timeout` runs out."""
    deadline = clock() + timeout
    watched = [w for w in workloads if w.kind in SCALABLE and w.replicas > 0]
    ready_since = None
    while True:
        why = {str(w): r for w in watched if (r := _not_ready(kube, w))}
        now = clock()
        ready_since = None if why else (now if ready_since is None else ready_since)
        if (ready_since is not None and now - ready_since >= settle) or now >= deadline:
            return why
        sleep(poll)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
