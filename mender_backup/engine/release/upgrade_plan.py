"""`helm mender-backup upgrade`, its plan: everything read and checked before anything changes
(the run is upgrade.py). The guarded upgrade, in order:

 1. preflight, nothing touched: the target is a Mender chart we support and not a downgrade;
    `helm upgrade --dry-run` renders it with the values it will get (the chart's own checks
    run), which gives the values diff and the migration Jobs; the signing keys are carried as
    the restore carries them; the hazards of the pair of versions; the schema versions now;
 2. a backup tagged for the upgrade: a Job made from the release's backup CronJob (the
    scheduled backup's image, Secrets and destination) with the release, revision, chart
    and target recorded in its manifest; then verified from here;
 3. `helm upgrade` (the chart's migration Jobs run as its pre-upgrade hooks), then health:
    every workload rolled out and Ready, and each service's readiness endpoint answering
    through its Service;
 4. a failure says where it stopped and how to go back: `helm mender-backup rollback`
    (engine/release/rollback.py), which `--auto-rollback` runs at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import mender as mender_info
from .. import preflight
from ..repository import Repository
from ..settings import Settings
from ...errors import MenderBackupError, NotFoundError, UnreachableError, UsageError
from ...kube.connection import Kube
from ...kube.helm import Helm, ReleaseInfo, redacted_argv
from ...redact import register_url_secrets, scrub
from . import chart as mender
from .companion import companion_destination, companion_name
from .immutable import Replaced, replaced
from .live_secrets import live_keys, live_signing_key, register_signing_key
from .target import TargetChart, check_target, hazards, read_target
from .values import dump_yaml, load_values, private_file
from .values_diff import values_diff

Say = Callable[[str], None]
_SET_FLAGS = ("--set", "--set-string")


@dataclass
class UpgradeRequest:
    """What `helm upgrade` would take, and how to guard it."""
    release: str
    chart: str
    version: str | None = None
    values_files: list[str] = field(default_factory=list)
    set_values: list[tuple[str, str]] = field(default_factory=list)   # (--set | --set-string, "a.b=c")
    reuse_values: bool = False
    reset_values: bool = False
    helm_timeout: str | None = None      # helm upgrade --timeout: how long the migration Jobs may take
    destination: str | None = None
    connect_url: str | None = None       # how this machine reaches Mender's MongoDB (schema versions)
    force: bool = False
    settings: Settings = Settings()


@dataclass
class UpgradePlan:
    request: UpgradeRequest
    info: ReleaseInfo
    target: TargetChart
    mender: mender.MenderValues
    upgrade_id: str
    destination: str
    current_text: str                    # the release's user values, as helm gives them
    current_values: str                  # the same, normalised for the diff
    new_values: str                      # what it will have (from the dry run, normalised)
    keys_values: str                     # the carried signing keys, as values (secret)
    kept_keys: dict[str, str]            # service -> where its key comes from
    hazards: list[str]
    hooks: list[str]                     # the pre-upgrade hook Jobs (migrations)
    hook_manifests: list[dict]           # helm's dry run's hooks (name, kind, weight, events, manifest)
    migrations: dict[str, str] | None    # database -> schema version now (None: not read)
    replaced: list[Replaced] = field(default_factory=list)    # deleted before the upgrade, made anew by it
    notes: list[str] = field(default_factory=list)

    @property
    def carries_current_values(self) -> bool:
        """helm reuses the last values when given none; we always give the keys file, so the
        release's values are given too, as they are."""
        r = self.request
        return not (r.values_files or r.set_values or r.reuse_values or r.reset_values)


def new_upgrade_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def upgrade_args(plan: UpgradePlan, current_file: str, keys_file: str | None) -> list[str]:
    r, info = plan.request, plan.info
    args = ["upgrade", info.name, r.chart] + (["--version", r.version] if r.version else [])
    if plan.carries_current_values:
        args += ["-f", current_file, "--reset-values"]
    for f in r.values_files:
        args += ["-f", f]
    for flag, value in r.set_values:
        args += [flag, value]
    if r.reuse_values:
        args.append("--reuse-values")
    if r.reset_values:
        args.append("--reset-values")
    if keys_file:
        args += ["-f", keys_file]      # last: the keys win over any file before them
    if r.helm_timeout:
        args += ["--timeout", r.helm_timeout]
    return args


def shown_argv(helm: Helm, plan: UpgradePlan) -> str:
    """The upgrade command for people: files named by role, --set values elided (the diff shows them)."""
    args = upgrade_args(plan, "<the release's values>", "<carried signing keys>" if plan.kept_keys else None)
    out = [("<value>" if i and args[i - 1] in _SET_FLAGS else a) for i, a in enumerate(args)]
    return redacted_argv(helm.argv(*out, namespace=plan.info.namespace or None))


def _normalised(data) -> str:
    def sort(v):
        if isinstance(v, dict):
            return {k: sort(v[k]) for k in sorted(v)}
        if isinstance(v, list):
            return [sort(x) for x in v]
        return v
    return dump_yaml(sort(data)) if data else ""


def build(helm: Helm, kube: Kube, req: UpgradeRequest) -> UpgradePlan:
    """Read and check everything; nothing changed (a refusal is one line)."""
    info = ReleaseInfo.from_metadata(helm.get_metadata(req.release))
    mender.check_supported(info)
    info.require_deployed()
    target = read_target(helm, req.chart, req.version)
    check_target(info, target, req.force)
    ns = info.namespace
    mv = mender.MenderValues(helm.get_all_values(info.name, namespace=ns), mender.major(info))
    current_text = helm.get_values(info.name, namespace=ns)
    current = dict(load_values(current_text))
    destination = req.destination or companion_destination(helm, info)
    try:
        helm.get_manifest(companion_name(info.name), namespace=ns)
    except NotFoundError:
        raise NotFoundError(f"no backup release {companion_name(info.name)}: the guarded upgrade backs up through "
                            f"it (`helm mender-backup install {info.name} --destination ...` first)") from None
    keys, kept, notes = _signing_keys(kube, ns, mv)
    plan = UpgradePlan(request=req, info=info, target=target, mender=mv, upgrade_id=new_upgrade_id(),
                       destination=destination, current_text=current_text,
                       current_values=_normalised(json.loads(json.dumps(current))),
                       new_values="", keys_values=dump_yaml(keys) if keys else "", kept_keys=kept,
                       hazards=hazards(info, mender.major(info), target, mv), hooks=[], hook_manifests=[],
                       migrations=None, notes=notes)
    rendered = _dry_run(helm, plan, current_text)
    plan.replaced = replaced(helm.get_manifest(info.name, namespace=ns), rendered.get("manifest") or "")
    for r in plan.replaced:
        if r.holds_data:
            raise UsageError(f"chart {target.version} changes {', '.join(r.fields)} of {r}, which Kubernetes does "
                             f"not allow in place, and it holds Mender's data: move MongoDB out of the release "
                             f"first (helm mender-backup restore --mongodb-url); nothing was changed")
    plan.new_values = _normalised(rendered.get("config") or {})
    plan.hook_manifests = rendered.get("hooks") or []
    plan.hooks = sorted(h.get("name", "?") for h in plan.hook_manifests
                        if h.get("kind") == "Job" and "pre-upgrade" in (h.get("events") or []))
    plan.migrations, note = _schema_versions(kube, ns, mv, req.connect_url)
    if note:
        plan.notes.append(note)
    Repository.at(destination, req.settings.destination_store).check(write=False)
    return plan


def _signing_keys(kube: Kube, ns: str, mv: mender.MenderValues) -> tuple[dict, dict[str, str], list[str]]:
    """The keys `helm upgrade` would generate anew, as values that keep them."""
    values: dict = {}
    kept: dict[str, str] = {}
    notes = []
    for svc, secret in mv.signing_keys_to_keep().items():
        key = live_signing_key(kube, ns, secret)
        if key is None:
            notes.append(f"{secret} has no private.pem: the upgrade generates a new {svc} key")
            continue
        register_signing_key(key)
        values[svc] = {"certs": {"key": key}}
        kept[svc] = f"Secret {secret}"
    return values, kept, notes


def _dry_run(helm: Helm, plan: UpgradePlan, current_text: str) -> dict:
    """`helm upgrade --dry-run -o json`: the chart renders with the values it will get (its own
    checks run), and says which values and hooks the release would have."""
    with private_file(current_text) as current, private_file(plan.keys_values or "{}") as keys:
        args = upgrade_args(plan, str(current), str(keys) if plan.kept_keys else None)
        # client side (helm 3.13+, 4): rendered, not sent; --hide-secret: no Secret in what comes back
        out = helm.run(*args, "--dry-run=client", "--hide-secret", "-o", "json",
                       namespace=plan.info.namespace or None)
    try:
        return json.loads(out)
    except ValueError:
        raise MenderBackupError("helm upgrade --dry-run: unexpected output (not JSON)") from None


def _schema_versions(kube: Kube, ns: str, mv: mender.MenderValues, connect_url: str | None):
    """The schema version of each Mender database now, when this machine reaches MongoDB."""
    url = connect_url
    if not url:
        url = mender.mongodb_url_in(live_keys(kube, ns, mv.mongodb_secret, mender.MONGODB_KEYS))
    register_url_secrets(url)
    if not url:
        return None, "schema versions: not read (no MongoDB URL; pass --connect-url)"
    try:
        client = preflight.connect_mongodb(url)
        dbs = [d for d in client.list_database_names() if d not in ("admin", "config", "local")]
        return mender_info.migration_versions(client, dbs), ""
    except (UnreachableError, MenderBackupError) as exc:
        return None, (f"schema versions: not read ({scrub(str(exc))}); pass --connect-url to see them "
                      f"(the backup records them either way)")


def show(plan: UpgradePlan, helm: Helm, say: Say, echo: Say) -> None:
    info, t = plan.info, plan.target
    say(f"Upgrade of release {info.name} (namespace {info.namespace}, revision {info.revision}): chart "
        f"{info.chart} {info.version} -> {t.name} {t.version}, Mender {info.app_version or '?'} -> "
        f"{t.app_version or '?'}; upgrade id {plan.upgrade_id}")
    if plan.migrations:
        say("  schema now: " + ", ".join(f"{db} {v}" for db, v in sorted(plan.migrations.items())))
    say(f"  migration Jobs the upgrade runs: {', '.join(plan.hooks) or 'none (dbmigration.enable is false)'}")
    for h in plan.hazards:
        say(f"  hazard: {h}")
    say(f"  1. back up through the release's backup CronJob ({companion_name(info.name)}), tagged for this "
        f"upgrade (revision {info.revision}, chart {info.version}), into {scrub(plan.destination)}; verify it")
    if plan.replaced:
        what = ", ".join(f"{r} ({', '.join(r.fields)})" for r in plan.replaced)
        say(f"  2. delete {what}, its pods left running: chart {t.version} changes what Kubernetes does not change "
            f"in place; the upgrade creates it anew (on a failure it is put back as it was)")
    say(f"  {'3' if plan.replaced else '2'}. {shown_argv(helm, plan)}")
    for svc, source in plan.kept_keys.items():
        say(f"     {svc}.certs.key from {source}: the signing key is kept, not regenerated")
    if plan.carries_current_values:
        say("     (no values given: the release's values are given again, as `helm upgrade` would reuse them)")
    say(f"  {'4' if plan.replaced else '3'}. wait until every workload has rolled out and stays Ready, then ask "
        f"each service's readiness endpoint through its Service")
    say(f"  on failure: helm mender-backup rollback {info.name} --to-upgrade {plan.upgrade_id} -n {info.namespace} "
        f"(the data of step 1 and revision {info.revision})")
    for note in plan.notes:
        say(f"  note: {note}")
    diff = values_diff(plan.current_values, plan.new_values, after=f"chart {t.version}")
    if diff:
        echo(diff.rstrip("\n"))
    else:
        say("  values: unchanged")
