"""Where a backup's artifacts come from: the release's bucket (or container) and the store of
every tenant with storage settings of its own (tenant_storage.py), all into the backup's one
shared `artifacts/` folder under Mender's own keys (`<tenant>/<artifact id>`, unique across
stores).

A key found both in the release's bucket and in its tenant's own store is the tenant store's:
Mender serves that tenant from its own store only (the other is left from before the tenant
moved). When the two differ in size, the backup says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..format.layout import ARTIFACTS
from ..format.manifest import ArtifactEntry
from ..output import Reporter
from ..stores import ObjectInfo, Store
from . import artifacts
from .tenant_storage import TenantStorage


@dataclass
class ArtifactSource:
    store: Store
    tenant: str = ""          # "": the release's bucket; else the tenant whose own store it is
    prefix: str = ""          # a tenant's store is read under <tenant>/ only

    def label(self) -> str:
        return f"tenant {self.tenant}'s {self.store}" if self.tenant else str(self.store)


def sources(bucket: Store | None, tenants: list[TenantStorage]) -> list[ArtifactSource]:
    return ([ArtifactSource(bucket)] if bucket else []) + [
        ArtifactSource(t.store(), t.tenant, t.prefix) for t in tenants]


def check(srcs: list[ArtifactSource]) -> None:
    """Each store reachable, before the long dump."""
    for src in srcs:
        src.store.check()


def _inventories(srcs: list[ArtifactSource], reporter: Reporter) -> list[dict[str, ObjectInfo]]:
    """Each source's objects under Mender's full keys, each key taken from one source only."""
    found = [artifacts.inventory_under(src.store, src.prefix) for src in srcs]
    owner: dict[str, int] = {}
    for i, objs in enumerate(found):
        for key in objs:
            j = owner.get(key)
            if j is not None and found[j][key].size != objs[key].size:
                reporter.warn(f"artifact {key}: {srcs[j].label()} holds {found[j][key].size} bytes, "
                              f"{srcs[i].label()} {objs[key].size}: backing up the latter, the one Mender serves")
            owner[key] = i        # later sources are tenants' own stores: they win
    return [{k: o for k, o in objs.items() if owner[k] == i} for i, objs in enumerate(found)]


def copy_into(dest: Store, srcs: list[ArtifactSource], reporter: Reporter, stats: dict) -> list[ArtifactEntry]:
    """Copy the artifacts the destination lacks (they are immutable: same key, same size, same
    object); -> the manifest's inventory of every artifact the backup references."""
    have = artifacts.inventory(dest, ARTIFACTS)
    entries: list[ArtifactEntry] = []
    copied = copied_bytes = 0
    for src, objs in zip(srcs, _inventories(srcs, reporter)):
        p = artifacts.plan(objs, have)
        reporter.info(f"artifacts: {len(objs)} in {src.label()}, {p.present} already backed up, "
                      f"copying {len(p.to_copy)} ({p.bytes} bytes)", artifacts=len(objs),
                      artifacts_copied=len(p.to_copy), artifact_bytes_copied=p.bytes,
                      **({"tenant": src.tenant} if src.tenant else {}))
        artifacts.copy(src.store, "", dest, ARTIFACTS, p.to_copy, reporter,
                       f"copying artifacts of tenant {src.tenant}" if src.tenant else "copying artifacts")
        copied, copied_bytes = copied + len(p.to_copy), copied_bytes + p.bytes
        entries += [ArtifactEntry(e.key, e.size, e.etag, src.tenant) for e in artifacts.entries(objs)]
    stats.update(artifacts_copied=copied, artifact_bytes_copied=copied_bytes)
    return sorted(entries, key=lambda e: e.key)


def described(tenants: list[TenantStorage], entries: list[ArtifactEntry]) -> dict[str, dict]:
    """The manifest's tenant_stores: each tenant whose own store gave an artifact, described
    (never its credentials)."""
    held = {e.tenant_store for e in entries}
    return {t.tenant: t.describe() for t in tenants if t.tenant in held}
