"""The artifacts of tenants with a store of their own (engine/tenant_storage.py), back where
Mender will look for them: the store each tenant's restored settings name, or the bucket
(container) `--tenant-storage-map TENANT=BUCKET` moves it to, in the same service with the
same credentials; the restored settings then name that bucket.

Planned before the first write, as the release's bucket is: the settings are read from the
proven archive, each store is reached and listed, and a key present there with another size is
a conflict unless --drop. Written after the documents: the copies, every key checked in its
store, then the moved tenants' settings.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ...errors import IntegrityError, UsageError
from ...format.layout import ARTIFACTS
from ...format.manifest import ArtifactEntry, Manifest
from ...output import Reporter
from ...stores import Store
from .. import artifacts
from ..tenant_storage import SETTINGS_COLLECTION, SETTINGS_ID, TenantStorage, from_archive


@dataclass
class TenantTarget:
    was: TenantStorage            # as the backup's settings say
    to: TenantStorage             # where the artifacts go (moved, or the same)
    store: Store                  # `to`, reached (one client for the plan and the copy)
    entries: list[ArtifactEntry]
    plan: artifacts.CopyPlan
    settings_at: tuple[str, str] | None     # the restored settings' namespace (None: not restored)

    def describe(self) -> dict:
        return {"tenant": self.was.tenant, "type": self.to.type, "bucket": self.to.bucket,
                **({"moved_from": self.was.bucket} if self.to.bucket != self.was.bucket else {}),
                "artifacts": len(self.entries), "to_copy": len(self.plan.to_copy), "present": self.plan.present}


def plan(manifest: Manifest | None, open_archive, moves: dict[str, str], drop: bool,
         restored: dict[tuple[str, str], tuple[str, str]]) -> list[TenantTarget]:
    """Every tenant store of the backup, reached and compared with what it holds; no write.
    `restored`: archive namespace -> where the restore writes it."""
    stores = manifest.tenant_stores if manifest else {}
    strays = sorted(set(moves) - set(stores))
    if strays:
        raise UsageError(f"--tenant-storage-map: tenant {strays[0]} has no store of its own in this backup"
                         + (f" (those that do: {', '.join(sorted(stores))})" if stores else ""))
    if not stores:
        return []
    with contextlib.closing(open_archive()) as f:
        settings = from_archive(f, stores)
    missing = sorted(set(stores) - set(settings))
    if missing:
        raise IntegrityError(f"backup {manifest.id}: the archive holds no storage settings for tenant {missing[0]}, "
                             "whose store the manifest lists")
    targets = []
    for tenant in sorted(stores):
        was = settings[tenant]
        to = was.moved_to(moves[tenant]) if tenant in moves else was
        store = to.store()
        store.check()
        settings_at = restored.get((was.database, SETTINGS_COLLECTION))
        if to is not was and settings_at is None:
            raise UsageError(f"--tenant-storage-map moves tenant {tenant}, but its settings "
                             f"({was.database}.{SETTINGS_COLLECTION}) are not restored: they would name the old store")
        entries = manifest.artifacts_of(tenant)
        held = artifacts.inventory_under(store, to.prefix)
        targets.append(TenantTarget(was, to, store, entries, artifacts.restore_plan(entries, held, drop), settings_at))
    return targets


def write(client, targets: list[TenantTarget], source_store, reporter: Reporter) -> None:
    """After the documents: each tenant's artifacts copied and checked in their store, then the
    moved tenants' settings (only once their artifacts are all there: a restore that fails
    before leaves them naming the store they named)."""
    for t in targets:
        if t.plan.to_copy:
            artifacts.copy(source_store, ARTIFACTS, t.store, "", t.plan.to_copy, reporter,
                           f"restoring artifacts of tenant {t.was.tenant}")
        bad = artifacts.check_complete(t.entries, artifacts.inventory_under(t.store, t.to.prefix))
        if bad:
            raise IntegrityError(f"restore verification failed: {len(bad)} artifact(s) missing or of the "
                                 f"wrong size in {t.to.label()} (e.g. {bad[0]})")
    for t in targets:
        changes = t.was.changes_to(t.to)
        if changes:
            db, collection = t.settings_at
            client[db][collection].update_one({"_id": SETTINGS_ID}, {"$set": changes})
            reporter.info(f"tenant {t.was.tenant}: its storage settings now name {t.to.bucket} "
                          f"(were {t.was.bucket})", tenant=t.was.tenant, bucket=t.to.bucket)
