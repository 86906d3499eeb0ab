"""Mender's key Secrets in a backup (docs/FORMAT.md, "Mender's secrets").

Without the keys that signed them, every device and user token of a restored
Mender is void. A backup reads the named Secrets through the Kubernetes API and
stores them as one encrypted bundle next to the archive (never in the clear: no
key, no bundle). A restore proves the bundle intact and decryptable, refuses to
overwrite live Secrets that differ unless told, then writes them back.

`load` and `restore` are what the helm plugin's restore calls, too.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..errors import ConflictError, IntegrityError, NotFoundError, UsageError
from ..format import encryption
from ..format.digest import HashingWriter
from ..format.encryption import Key, Keyring
from ..format.layout import backup_key
from ..format.manifest import Manifest, SecretsEntry
from ..format.secrets_bundle import FILE, Bundle, BundledSecret
from ..kube import secrets as kube_secrets
from ..kube.connection import Kube
from ..output import Reporter
from ..stores import Store

# helm's ownership marks are not restored: `helm install` then refuses to adopt (and
# regenerate) a restored key Secret instead of silently replacing it
HELM_OWNERSHIP = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")
# kubectl apply keeps the whole object, data included, in this annotation: never stored
NOT_STORED = ("kubectl.kubernetes.io/last-applied-configuration",)
RESTORED_FROM = "mender-backup/restored-from"


def context(backup_id: str) -> str:
    return f"secrets:{backup_id}"


def collect(kube: Kube, namespace: str, required: list[str], optional: list[str],
            reporter: Reporter) -> Bundle:
    """Read the Secrets (get by name: all the chart's Role allows). A required one
    missing fails the backup; an optional one is recorded as absent."""
    bundle = Bundle(namespace, datetime.now(timezone.utc).isoformat())
    for name in required + optional:
        s = kube_secrets.read(kube, namespace, name)
        if s is None:
            if name in required:
                raise NotFoundError(f"Secret {namespace}/{name} does not exist: Mender's keys cannot be backed "
                                    f"up (name it with a trailing '?' if it is optional)")
            bundle.absent.append(name)
            continue
        annotations = {k: v for k, v in s.annotations.items() if k not in NOT_STORED}
        bundle.secrets.append(BundledSecret(s.name, s.type, s.data, s.labels, annotations))
    reporter.info(f"Mender secrets: {len(bundle.secrets)} read from namespace {namespace}"
                  + (f" ({', '.join(bundle.absent)} absent)" if bundle.absent else ""),
                  secrets=[s.name for s in bundle.secrets], absent=bundle.absent)
    return bundle


def store_bundle(dest: Store, backup_id: str, bundle: Bundle, key: Key) -> SecretsEntry:
    name = backup_key(backup_id, FILE)
    with dest.open_write(name) as out:
        hashing = HashingWriter(out)
        with encryption.encryptor(hashing, key, context(backup_id)) as w:
            w.write(bundle.to_json())
    return SecretsEntry(FILE, hashing.size, hashing.hexdigest(), bundle.namespace,
                        [s.name for s in bundle.secrets], bundle.absent)


def load(store: Store, manifest: Manifest, keyring: Keyring | None) -> Bundle:
    """The backup's bundle, its sha256 checked and every byte authenticated."""
    import hashlib
    import io
    entry = manifest.mender_secrets
    if entry is None:
        raise NotFoundError(f"backup {manifest.id} holds no Mender secrets")
    what = f"Mender secrets of backup {manifest.id}"
    key_fp = manifest.encryption.key_fingerprint if manifest.encryption else ""
    (keyring or Keyring([])).require(key_fp, what)
    raw = store.get_bytes(backup_key(manifest.id, entry.key))
    if len(raw) != entry.size or hashlib.sha256(raw).hexdigest() != entry.sha256:
        raise IntegrityError(f"{what}: corrupt (sha256 or size differs from the manifest)")
    plain = encryption.decryptor(io.BytesIO(raw), keyring, context(manifest.id), what, key_fp).read()
    return Bundle.from_json(plain, what)


def plan(kube: Kube, namespace: str, bundle: Bundle, overwrite: bool) -> dict[str, str]:
    """name -> create | unchanged | replace. Live Secrets that differ are a conflict
    (exit 4) unless `overwrite`; nothing is written here."""
    actions: dict[str, str] = {}
    conflicts = []
    for s in bundle.secrets:
        live = kube_secrets.read(kube, namespace, s.name)
        if live is None:
            actions[s.name] = "create"
        elif live.data == s.data and live.type == s.type:
            actions[s.name] = "unchanged"
        elif live.type != s.type:
            raise ConflictError(f"Secret {namespace}/{s.name} exists with type {live.type}, the backup's is "
                                f"{s.type}: delete it first")
        else:
            actions[s.name] = "replace"
            conflicts.append(s.name)
    if conflicts and not overwrite:
        raise ConflictError(f"Secret(s) {', '.join(conflicts)} in namespace {namespace} hold other keys than the "
                            f"backup: rerun with --overwrite-secrets to replace them (tokens signed with the "
                            f"current keys then stop working)")
    return actions


def apply(kube: Kube, namespace: str, bundle: Bundle, actions: dict[str, str], backup_id: str) -> None:
    mark = {RESTORED_FROM: backup_id}
    for s in bundle.secrets:
        action = actions.get(s.name)
        if action == "create":
            annotations = {k: v for k, v in s.annotations.items() if k not in HELM_OWNERSHIP}
            kube_secrets.create(kube, namespace, kube_secrets.SecretObject(
                s.name, s.type, s.data, dict(s.labels), {**annotations, **mark}))
        elif action == "replace":
            kube_secrets.replace_data(kube, namespace, s.name, s.data, mark)


def restore(bundle: Bundle, backup_id: str, reporter: Reporter, namespace: str = "", overwrite: bool = False,
            dry_run: bool = False, kube: Kube | None = None) -> dict:
    """Put a bundle's Secrets back (the entry point for the helm plugin's restore)."""
    kube = kube or Kube.from_env()
    ns = namespace or bundle.namespace or kube.namespace
    actions = plan(kube, ns, bundle, overwrite)
    if not dry_run:
        apply(kube, ns, bundle, actions, backup_id)
    changed = [n for n, a in actions.items() if a != "unchanged"]
    reporter.info(f"Mender secrets: {'would write' if dry_run else 'wrote'} {len(changed)} Secret(s) in "
                  f"namespace {ns}, {len(actions) - len(changed)} already identical", secrets=actions)
    return {"namespace": ns, "secrets": actions, "absent": bundle.absent}


def require_encryption(names: list[str], keyring: Keyring | None) -> Key:
    if keyring is None or keyring.current is None:
        raise UsageError("Mender's secrets are only stored encrypted: set MENDER_BACKUP_ENCRYPTION_KEY or "
                         "MENDER_BACKUP_ENCRYPTION_KEY_FILE (or do not ask for --mender-secrets)")
    return keyring.current
