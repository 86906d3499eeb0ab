"""What the tests on the live cluster (testenv/mender_cluster.py) read and check, independently
of our code: Deployments Ready (with the pods' states and logs when not), the chart's migration
Jobs (by their Completed events, and by a watcher that samples every Job while an operation
runs: helm deletes a hook Job as soon as it succeeded), our CronJob's Jobs; and new stores for
a restore (a DocumentDB relayed to the pods, a bucket)."""

from __future__ import annotations

import json
import threading
import uuid

from testenv import mender_cluster, servers

NS = mender_cluster.NAMESPACE
MIGRATIONS = {f"mender-{s}-migration" for s in (      # the chart's component names
    "useradm", "deviceauth", "inventory", "deployments", "deviceconnect", "deviceconfig", "iot-manager",
    "workflows")}


def new_stores(live: dict, minio, name: str, bucket_prefix: str):
    """A DocumentDB of its own (stopped with the module) relayed to the pods, and a new bucket."""
    db = servers.start_documentdb(live["tmp"] / f"docdb-{name}")
    live["stores"].append(db)
    live["cluster"].forward(db.port)
    bucket = f"{bucket_prefix}-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=bucket)
    return db, bucket


def assert_every_deployment_ready(cluster, namespace: str = NS, count: int = 9) -> None:
    """Every Deployment of the release Ready (`count` of them); else which are not, with their
    pods' states and last log lines (what a failure in CI must show)."""
    deploys = cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
    assert len(deploys) == count, sorted(d["metadata"]["name"] for d in deploys)
    unready = [d["metadata"]["name"] for d in deploys
               if not d["status"].get("readyReplicas") == d["spec"]["replicas"] >= 1]
    if not unready:
        return
    report = []
    for pod in cluster.get(f"/api/v1/namespaces/{namespace}/pods")["items"]:
        name = pod["metadata"]["name"]
        if any(name.startswith(u + "-") for u in unready):
            report.append(f"--- {name}: {json.dumps(pod['status'].get('containerStatuses'))[:1500]}")
            for previous in ([], ["--previous"]):
                try:
                    report.append(cluster.kubectl("-n", namespace, "logs", name, "--tail", "25", *previous))
                except RuntimeError as exc:
                    report.append(str(exc))
    raise AssertionError(f"not Ready: {unready}\n" + "\n".join(report))


def cronjob_jobs(cluster, namespace: str = NS) -> list[dict]:
    """The Jobs the CronJob controller made (owner: our CronJob), oldest first."""
    jobs = cluster.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]
    ours = [j for j in jobs if any(o["kind"] == "CronJob" and o["name"].startswith("mender-backup")
                                   for o in j["metadata"].get("ownerReferences", []))]
    return sorted(ours, key=lambda j: j["metadata"]["creationTimestamp"])


def finished(job: dict) -> str | None:
    for c in job.get("status", {}).get("conditions", []):
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return c["type"]
    return None


def completed_migrations(cluster, namespace: str = NS) -> dict[str, str]:
    """Job uid -> name of every migration Job the cluster recorded as completed (events stay
    an hour; the Jobs themselves are deleted by helm once they succeed)."""
    events = cluster.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    return {e["involvedObject"]["uid"]: e["involvedObject"]["name"] for e in events
            if e["involvedObject"]["kind"] == "Job" and e["reason"] == "Completed"
            and e["involvedObject"]["name"] in MIGRATIONS}


class JobWatch:
    """Every Job of the namespace seen while it runs, sampled each second: uid -> (name, the
    last conditions seen). A second witness beside the events: helm deletes a hook Job as
    soon as it succeeded, and a sample can miss its last state."""

    def __init__(self, cluster, namespace: str = NS):
        self.cluster, self.namespace, self.seen, self._stop = cluster, namespace, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for j in self.cluster.get(f"/apis/batch/v1/namespaces/{self.namespace}/jobs")["items"]:
                    conds = [c["type"] for c in j.get("status", {}).get("conditions", []) if c["status"] == "True"]
                    self.seen[j["metadata"]["uid"]] = (j["metadata"]["name"], conds)
            except RuntimeError:
                pass
            self._stop.wait(1.0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def assert_every_migration_completed(run: dict) -> None:
    """Each of the chart's 8 migration Jobs ran during the operation (a new Job, not the
    install's) and completed: by its Completed event, or by a Complete condition sampled;
    none failed. `run`: {"watched": JobWatch.seen, "migrations": the new Completed events}."""
    watched = {u: name for u, (name, conds) in run["watched"].items() if "Complete" in conds}
    done = {**run["migrations"], **watched}
    assert not {n for n, conds in run["watched"].values() if "Failed" in conds}, run["watched"]
    assert sorted(set(done.values()) & MIGRATIONS) == sorted(MIGRATIONS), (run["migrations"], run["watched"])
