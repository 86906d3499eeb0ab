"""`helm mender-backup rollback`: data and release back to the moment before a guarded upgrade.

`helm rollback` returns the release's objects, not the data the new version's migrations
rewrote. This finds the backup that guards the upgrade (`upgrade.py` tagged it with the
release, the revision and the upgrade id), and builds a restore plan (`plan.Plan`, carried
out by `runbook.run`) whose release step is `helm rollback RELEASE REVISION` instead of an
upgrade: stop Mender, restore the backup into the release's own MongoDB and bucket,
replacing the collections it holds (the migration_info of each database included: its
schema goes back), roll the release back, start and restart everything, check health.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import preflight
from ..preflight import Manifest
from ..repository import Repository
from ..settings import Settings
from ...errors import ConflictError, NotFoundError
from ...kube.connection import Kube
from ...kube.helm import Helm, ReleaseInfo
from ...redact import register_url_secrets
from . import chart as mender
from .companion import companion_destination
from .live_secrets import live_keys
from .plan import Plan, Request, release_workloads


@dataclass
class RollbackRequest:
    release: str
    upgrade: str | None = None           # the upgrade id (default: the latest guarded upgrade of the release)
    destination: str | None = None
    connect_url: str | None = None       # how this machine reaches the release's MongoDB
    settings: Settings = Settings()


def find_guard(repo: Repository, release: str, upgrade: str | None) -> Manifest:
    """The complete backup that guards `upgrade` of `release` (default: the latest one)."""
    guards = [e.manifest for e in repo.backups().complete
              if (e.manifest.mender or {}).get("upgrade") and (e.manifest.mender or {}).get("release") == release]
    if upgrade:
        guards = [m for m in guards if m.mender.get("upgrade") == upgrade or m.id == upgrade]
    if not guards:
        what = f"upgrade {upgrade}" if upgrade else "any upgrade"
        raise NotFoundError(f"no complete backup at {repo} guards {what} of release {release} "
                            f"(`helm mender-backup list {release}` shows which backups guard which upgrade)")
    return guards[-1]


def build(helm: Helm, kube: Kube, req: RollbackRequest) -> Plan:
    """Everything read and checked; nothing changed."""
    info = ReleaseInfo.from_metadata(helm.get_metadata(req.release))
    mender.check_supported(info)
    if info.status not in ("deployed", "failed"):
        raise ConflictError(f"release {info.name} is {info.status or 'in an unknown state'}: another helm "
                            f"operation may be running (helm history {info.name} -n {info.namespace})")
    ns = info.namespace
    destination = req.destination or companion_destination(helm, info)
    repo = Repository.at(destination, req.settings.destination_store)
    repo.check(write=False)
    manifest = find_guard(repo, info.name, req.upgrade)
    revision = int(manifest.mender["revision"])
    if revision >= info.revision:
        raise ConflictError(f"release {info.name} is at revision {info.revision}; backup {manifest.id} guards "
                            f"revision {revision}: there is nothing to roll back")
    if manifest.encryption:
        from .. import keys
        keys.from_env(req.settings.environ).require(manifest.encryption.key_fingerprint, f"backup {manifest.id}")
    mv = mender.MenderValues(helm.get_all_values(info.name, namespace=ns), mender.major(info))
    current_url = mender.mongodb_url_in(live_keys(kube, ns, mv.mongodb_secret, mender.MONGODB_KEYS))
    register_url_secrets(current_url)
    register_url_secrets(req.connect_url)
    connect = req.connect_url or current_url
    if not connect:
        raise NotFoundError(f"no MongoDB URL in Secret {mv.mongodb_secret}: pass --connect-url")
    preflight.connect_mongodb(connect)
    bucket = mender.bucket_in(live_keys(kube, ns, mv.s3_secret, mender.BUCKET_KEYS), mv) or None
    if bucket and manifest.artifacts:
        preflight.check_bucket(bucket, req.settings)
    target_values = helm.run("get", "values", info.name, "--revision", str(revision), "-o", "yaml", namespace=ns)
    notes = [f"collections the backup does not hold, and artifacts uploaded after it, are kept: Mender "
             f"{manifest.mender.get('app_version') or '?'} does not read what a newer version added",
             "the release's Secrets come back as helm rollback writes them (the chart's, of revision "
             f"{revision})"]
    request = Request(release=info.name, backup=manifest.id, destination=destination, connect_url=req.connect_url,
                      drop=True, settings=req.settings)
    return Plan(request=request, info=info, mender=mv, manifest=manifest, destination=destination,
                connect_url=connect, target_bucket=bucket if manifest.artifacts else None, repoints_mongodb=False,
                user_values=helm.get_values(info.name, namespace=ns), new_values=target_values, chart_ref="",
                workloads=release_workloads(helm, kube, info), notes=notes, rollback_to=revision)
