"""`helm mender-backup upgrade --rehearse-mongodb-url URL`: the target version's migrations run on
a copy of the real data before production is touched.

The latest complete backup is restored into the scratch MongoDB at URL (it must be empty); the
target chart's migration Jobs, as helm's dry run rendered them with the release's values, run
there one after another as helm would run them (a Job per service, the new image, `migrate`),
each renamed and reading the scratch URL from a temporary Secret instead of the release's
MongoDB Secret. Each Job's outcome is reported; a Job that succeeded and the Secret are
deleted after, a failed Job is kept an hour for its logs. Nothing of the release changes."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

from ruamel.yaml import YAML

from .. import restore as engine_restore
from ..repository import Repository
from ...errors import MenderBackupError
from ...kube import jobs
from ...kube.connection import Kube
from ...output import Reporter
from ...redact import redact_url, register_url_secrets
from .upgrade_plan import UpgradePlan

Say = Callable[[str], None]
LABEL = "mender-backup.io/rehearsal"


def migration_jobs(hooks: list[dict]) -> list[dict]:
    """The pre-upgrade hook Jobs of a dry run, in helm's order (weight, then name)."""
    found = []
    for h in hooks:
        if h.get("kind") != "Job" or "pre-upgrade" not in (h.get("events") or []):
            continue
        doc = YAML(typ="safe").load(h.get("manifest") or "")
        if isinstance(doc, dict):
            found.append((int(h.get("weight") or 0), doc["metadata"]["name"], doc))
    return [doc for _, _, doc in sorted(found, key=lambda t: (t[0], t[1]))]


def rehearsal_job(job: dict, rid: str, secret: str, mongodb_secrets: set[str]) -> dict:
    """The Job, renamed for the rehearsal, no longer a hook, reading MongoDB from `secret`."""
    j = copy.deepcopy(job)
    meta = j["metadata"]
    meta["name"] = f"{meta['name'][:44]}-r{rid.lower()}"          # at most 63 characters
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("helm.sh/")}
    meta.setdefault("labels", {})[LABEL] = rid.lower()
    meta.pop("namespace", None)
    j["spec"]["backoffLimit"] = 0
    j["spec"]["ttlSecondsAfterFinished"] = 3600
    for c in j["spec"]["template"]["spec"].get("containers") or []:
        for e in c.get("envFrom") or []:
            if (e.get("secretRef") or {}).get("name") in mongodb_secrets:
                e["secretRef"]["name"] = secret
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") in mongodb_secrets:
                ref["name"] = secret
    return j


@dataclass
class Outcome:
    job: str
    failure: str | None          # None: the migration succeeded


def run(plan: UpgradePlan, kube: Kube, url: str, reporter: Reporter, say: Say, job_timeout: float,
        clock=time.monotonic, sleep=time.sleep) -> list[Outcome]:
    register_url_secrets(url)
    ns, rid = plan.info.namespace, plan.upgrade_id
    repo = Repository.at(plan.destination, plan.request.settings.destination_store)
    latest = repo.resolve("latest")
    say(f"rehearsal: restoring backup {latest.id} into {redact_url(url)}")
    engine_restore.run(engine_restore.RestoreOptions(mongodb_url=url, backup_id=latest.id, source=plan.destination,
                                                     settings=plan.request.settings), reporter)
    secret = f"{plan.info.name[:30]}-rehearsal-{rid.lower()}"
    mongodb_secrets = {plan.mender.mongodb_secret, "mongodb-common", "mongodb-common-prerelease",
                       *plan.mender.service_mongodb_secrets.values()}
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret, "labels": {LABEL: rid.lower()}}, "stringData": {"MONGO": url, "MONGO_URL": url}}
    with kube.call(f"creating Secret {ns}/{secret}"):
        kube.core.create_namespaced_secret(ns, body)
    outcomes: list[Outcome] = []
    try:
        for job in migration_jobs(plan.hook_manifests):
            j = rehearsal_job(job, rid, secret, mongodb_secrets)
            name = j["metadata"]["name"]
            with kube.call(f"creating Job {ns}/{name}"):
                kube.batch.create_namespaced_job(ns, j)
            try:
                jobs.wait_job(kube, ns, name, job_timeout, clock=clock, sleep=sleep)
            except MenderBackupError as exc:     # kept an hour for its logs (ttlSecondsAfterFinished)
                outcomes.append(Outcome(job["metadata"]["name"], str(exc)))
                say(f"rehearsal: {job['metadata']['name']} FAILED on the copy: {exc}")
                break                            # helm stops at the first failed hook too
            outcomes.append(Outcome(job["metadata"]["name"], None))
            say(f"rehearsal: {job['metadata']['name']} succeeded on the copy")
            with kube.call(f"deleting Job {ns}/{name}"):
                kube.batch.delete_namespaced_job(name, ns, propagation_policy="Background")
    finally:
        with kube.call(f"deleting Secret {ns}/{secret}"):
            kube.core.delete_namespaced_secret(secret, ns)
    return outcomes
