"""The restore plan for a live Mender release: everything is read and checked here,
before any data or object is touched; every refusal is one line saying what to do.

The plan holds what `runbook.py` will do, in order: which workloads stop, what data
is restored where, which Secrets and values change (the release's signing keys
carried over, so the upgrade rotates nothing), the upgrade, and the restarts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from .. import mender as mender_info
from .. import preflight
from ..preflight import Manifest
from ..repository import Repository
from ..settings import Settings
from ...errors import ConflictError, NotFoundError, UnreachableError, UsageError
from ...kube.connection import Kube
from ...kube import workloads
from ...kube.workloads import Workload
from ...redact import redact_url, register_url_secrets
from . import chart as mender
from .companion import companion_destination, companion_name, cronjob_from_manifest
from ...kube.helm import Helm, ReleaseInfo, resolve_chart
from .live_secrets import live_keys, live_signing_key, register_signing_key
from .changes import Changes, SecretChange
from .repoint_artifacts import repoint_artifacts
from .values import load_values, rewrite_values

MANAGED_KINDS = ("Deployment", "StatefulSet", "CronJob")


@dataclass
class Request:
    """What the operator asked for (secrets come by environment, never by argument)."""
    release: str
    backup: str
    destination: str | None = None
    mongodb_url: str | None = None       # a new MongoDB for Mender (global.mongodb.URL)
    connect_url: str | None = None       # how this machine reaches the target MongoDB
    bucket: str | None = None            # a new bucket (global.s3.AWS_BUCKET) or container (global.azure.CONTAINER_NAME)
    chart: str | None = None
    drop: bool = False
    force: bool = False
    tenant_storage_map: list[str] = field(default_factory=list)   # TENANT=BUCKET: tenants' own stores moved
    settings: Settings = Settings()      # the environment: S3, keys, the state folder


@dataclass
class Plan:
    request: Request
    info: ReleaseInfo
    mender: mender.MenderValues
    manifest: Manifest
    destination: str
    connect_url: str                     # where the data goes, as this machine reaches it
    target_bucket: str | None            # where the artifacts go (None: no artifacts to restore)
    repoints_mongodb: bool               # Mender moves to another MongoDB
    user_values: str
    new_values: str
    chart_ref: str
    workloads: list[Workload] = field(default_factory=list)
    secret_changes: list[SecretChange] = field(default_factory=list)
    kept_keys: dict[str, str] = field(default_factory=dict)      # service -> where its signing key comes from
    notes: list[str] = field(default_factory=list)
    rollback_to: int | None = None       # a rollback (engine/release/rollback.py): helm rollback, no upgrade

    @property
    def namespace(self) -> str:
        return self.info.namespace


def _manifest_workloads(text: str, namespace: str) -> list[tuple[str, str, dict]]:
    from ruamel.yaml import YAML
    out = []
    for doc in YAML(typ="safe").load_all(text):
        if isinstance(doc, dict) and doc.get("kind") in MANAGED_KINDS:
            out.append((doc["kind"], doc["metadata"]["name"], doc["metadata"].get("labels") or {}))
    return out


def release_workloads(helm: Helm, kube: Kube, info: ReleaseInfo, companion: bool = True) -> list[Workload]:
    """The release's Deployments, StatefulSets and CronJobs (from its manifest: exactly what
    helm manages), but the data stores a restore writes to; and (`companion`) our companion's
    CronJob, so no backup runs against a half-restored database."""
    ns = info.namespace
    found = []
    for kind, name, labels in _manifest_workloads(helm.get_manifest(info.name, namespace=ns), ns):
        component = labels.get("app.kubernetes.io/component") or labels.get("app.kubernetes.io/name") or ""
        if component in mender.DATA_COMPONENTS:
            continue
        found.append(workloads.read(kube, kind, name, ns)[0])
    if not companion:
        return found
    try:
        ours = helm.get_manifest(companion_name(info.name), namespace=ns)
    except NotFoundError:
        ours = ""
    if ours:
        name = cronjob_from_manifest(ours)["metadata"]["name"]
        found.append(workloads.read(kube, "CronJob", name, ns)[0])
    return found


def build(helm: Helm, kube: Kube, req: Request) -> Plan:
    """Read and check everything a restore of `req` needs; -> the plan, or a one-line refusal."""
    info = ReleaseInfo.from_metadata(helm.get_metadata(req.release))
    mender.check_supported(info)
    info.require_deployed()
    chart_ref = resolve_chart(helm, info, req.chart)      # the same chart version, or nothing happens
    ns = info.namespace
    user_text = helm.get_values(info.name, namespace=ns)
    mv = mender.MenderValues(helm.get_all_values(info.name, namespace=ns), mender.major(info))
    if mv.storage not in ("aws", "azure"):
        raise UsageError(f"release {info.name} keeps artifacts in {mv.storage!r} (global.storage): only aws and "
                         f"azure are supported; nothing was changed")
    register_url_secrets(req.mongodb_url)
    register_url_secrets(req.connect_url)
    ch = Changes()
    current_url, connect = _repoint_mongodb(kube, ns, mv, req, ch)
    target_bucket = repoint_artifacts(kube, ns, mv, req, ch)
    destination, repo, manifest = _backup(helm, info, req, connect, mv, ch)
    kept = _carry_signing_keys(kube, ns, mv, repo, manifest, ch, req.settings)
    new_text = rewrite_values(user_text, ch.values) if ch.values else user_text
    load_values(new_text)
    return Plan(
        request=req, info=info, mender=mv, manifest=manifest, destination=destination, connect_url=connect,
        target_bucket=target_bucket if manifest.artifacts else None,
        repoints_mongodb=bool(req.mongodb_url) and req.mongodb_url != current_url,
        user_values=user_text, new_values=new_text, chart_ref=chart_ref,
        workloads=release_workloads(helm, kube, info), secret_changes=ch.secrets,
        kept_keys=kept, notes=ch.notes)


def _repoint_mongodb(kube: Kube, ns: str, mv: mender.MenderValues, req: Request, ch: Changes) -> tuple[str, str]:
    """Where Mender reads MongoDB now, and where it will; -> (the current URL, the URL this
    machine restores to)."""
    current = live_keys(kube, ns, mv.mongodb_secret, mender.MONGODB_KEYS)
    current_url = mender.mongodb_url_in(current)
    register_url_secrets(current_url)
    if req.mongodb_url:
        if mv.user_mongodb_secret:
            ch.secrets.append(SecretChange(mv.mongodb_secret, {k: req.mongodb_url for k in current},
                                           "global.mongodb.existingSecret: Mender reads the URL from it"))
        else:
            ch.values[mender.MONGODB_URL] = req.mongodb_url
            if mv.embedded_mongodb:
                ch.values[mender.EMBEDDED_MONGODB] = False
                ch.notes.append("the release runs the chart's embedded MongoDB; Mender moves to the given URL, so "
                                "the plan turns it off (mongodb.enabled: false): the upgrade removes its workload, "
                                "its volume is kept")
        for svc, secret in mv.service_mongodb_secrets.items():
            keys = live_keys(kube, ns, secret, mender.MONGODB_KEYS)
            if not keys:
                raise UsageError(f"{svc}.mongodbExistingSecret {secret} holds neither MONGO nor MONGO_URL: update "
                                 f"it yourself or unset it; nothing was changed")
            ch.secrets.append(SecretChange(secret, {k: req.mongodb_url for k in keys},
                                           f"{svc}.mongodbExistingSecret: the {svc} service reads its URL from it"))
    elif mv.service_mongodb_secrets:
        ch.notes.append("services with their own MongoDB Secret (" + ", ".join(
            f"{s}: {n}" for s, n in mv.service_mongodb_secrets.items()) + ") keep it: the data goes to the "
            "release's MongoDB only")
    connect = req.connect_url or req.mongodb_url or current_url
    if not connect:
        raise NotFoundError(f"no MongoDB URL in Secret {mv.mongodb_secret}: pass --mongodb-url or --connect-url")
    return current_url, connect


def _backup(helm: Helm, info: ReleaseInfo, req: Request, connect: str, mv: mender.MenderValues,
            ch: Changes) -> tuple[str, Repository, Manifest]:
    """The backup to restore, its key present, and a Mender no newer than the release."""
    destination = req.destination or companion_destination(helm, info)
    repo = Repository.at(destination, req.settings.destination_store)
    repo.check(write=False)
    manifest = repo.resolve(req.backup)
    if manifest.encryption:      # the key it needs, here, before anything stops (exit 6 without)
        from .. import keys
        keys.from_env(req.settings.environ).require(manifest.encryption.key_fingerprint, f"backup {manifest.id}")
    client = _reach(connect)
    live = mender_info.migration_versions(client, sorted(manifest.databases))
    newer = mender_info.newer_than(manifest.mender, info.app_version, live)
    if newer and not req.force:
        raise ConflictError(f"backup {manifest.id} is from a newer Mender ({'; '.join(newer)}): the release "
                            f"cannot run it; upgrade the release first, or pass --force")
    if newer:
        ch.notes.append(f"--force: restoring data from a newer Mender ({'; '.join(newer)})")
    if not mv.migrations:
        ch.notes.append("dbmigration.enable is false in the release: the upgrade runs no migrations")
    return destination, repo, manifest


def _carry_signing_keys(kube: Kube, ns: str, mv: mender.MenderValues, repo: Repository, manifest: Manifest,
                        ch: Changes, settings: Settings) -> dict[str, str]:
    """The signing keys the upgrade keeps: the backup's, when it holds them (tokens signed
    before the backup verify after it, also on a new cluster); else the live ones, so the
    upgrade generates none; -> service -> where its key comes from."""
    from_backup = _backup_signing_keys(repo.store, manifest, ch.notes, settings)
    regenerated = mv.signing_keys_to_keep()
    kept: dict[str, str] = {}
    for svc, secret in mv.signing_key_services().items():
        key, source = from_backup.get(secret), f"the backup's {secret}"
        if key is None and svc in regenerated:
            key, source = live_signing_key(kube, ns, secret), f"Secret {secret}"
            if key is None:
                ch.notes.append(f"{secret} has no private.pem: the upgrade generates a new {svc} key (sessions "
                                f"and tokens it signed become invalid)")
                continue
        if key is None:
            continue
        register_signing_key(key)
        ch.values[(svc, "certs", "key")] = key
        kept[svc] = source
    return kept


def _backup_signing_keys(store, manifest: Manifest, notes: list[str], settings: Settings) -> dict[str, str]:
    """Secret name -> private key, from the backup's (encrypted) Mender secrets bundle."""
    from .. import keys, mender_secrets
    if manifest.mender_secrets is None:
        return {}
    bundle = mender_secrets.load(store, manifest, keys.from_env(settings.environ))
    out = {}
    for s in bundle.secrets:
        pem = s.data.get("private.pem")
        if pem and s.name in mender.SIGNING_KEYS.values():
            out[s.name] = base64.b64decode(pem).decode()
    return out


def _reach(url: str):
    """The target MongoDB, from this machine; before anything is touched."""
    try:
        return preflight.connect_mongodb(url)
    except UnreachableError as exc:
        raise UnreachableError(f"{exc} (from this machine): pass --connect-url with a URL this machine reaches, "
                               f"e.g. through `kubectl port-forward`; nothing was changed") from None


def describe_target(plan: Plan) -> str:
    where = redact_url(plan.request.mongodb_url) if plan.repoints_mongodb else "the release's MongoDB"
    return where + (f" (reached here as {redact_url(plan.connect_url)})"
                    if plan.request.connect_url else "")
