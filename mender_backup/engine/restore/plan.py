"""The restore's plan: what it drops, creates and leaves alone on the target, decided
before the first write (decide() is pure: the tests drive it without a server), and the
first writes themselves (create_collections)."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

from pymongo import errors as perr

from ...errors import ConflictError, MenderBackupError
from ...format.metadata import CollectionSpec
from ...mongo import collections as mongo
from ...output import Reporter
from .. import namespaces
from ..artifacts import CopyPlan

Namespace = tuple[str, str]


@dataclass
class Plan:
    namespaces: list[CollectionSpec]
    counts: dict[Namespace, int]                       # expected documents per namespace
    to_drop: dict[Namespace, int]                      # existing collections that --drop replaces
    kept: dict[str, list[str]]                         # other collections in target dbs, untouched
    artifacts: CopyPlan | None = None
    tenant_stores: list = field(default_factory=list)    # tenant_stores.TenantTarget: tenants' own stores
    selection: namespaces.Selection = field(default_factory=namespaces.Selection)
    oplog: dict = field(default_factory=dict)          # what happens to the oplog (replayed or not, why)

    def describe(self) -> dict:
        return {
            "skipped": self.selection.describe_skipped(),
            "oplog": self.oplog,
            "drop": [{"namespace": f"{db}.{c}", "documents": n} for (db, c), n in sorted(self.to_drop.items())],
            "create": [{"namespace": f"{i.db}.{i.name}", "type": i.type,
                        "documents": self.counts.get((i.db, i.name), 0),
                        "indexes": sorted(x.get("name", "") for x in i.indexes)} for i in self.namespaces],
            "untouched": [f"{db}.{c}" for db, cs in sorted(self.kept.items()) for c in cs],
            "artifacts": None if self.artifacts is None else {
                "copy": len(self.artifacts.to_copy), "bytes": self.artifacts.bytes,
                "already_present": self.artifacts.present},
            "tenant_stores": [t.describe() for t in self.tenant_stores],
        }


def decide(wanted: list[CollectionSpec], counts: dict[Namespace, int], target: dict[str, dict[str, int]],
           drop: bool) -> Plan:
    """The plan from what the target holds: `target` is db -> {collection: documents} for the
    databases the restore writes to (`system.*` left out). A database that holds documents is
    refused without --drop; with it, the collections the backup holds are dropped and every
    other collection is kept. Without --drop, collections that exist empty (a service may
    create them at start-up) are added to."""
    ours = {(i.db, i.name) for i in wanted}
    kept: dict[str, list[str]] = {}
    busy: dict[str, int] = {}
    for db in sorted({i.db for i in wanted}):
        for c, n in (target.get(db) or {}).items():
            if c.startswith("system."):
                continue
            if n:
                busy[db] = busy.get(db, 0) + n
            if (db, c) not in ours:
                kept.setdefault(db, []).append(c)
    if busy and not drop:
        desc = ", ".join(f"{db} ({n} documents)" for db, n in sorted(busy.items()))
        raise ConflictError(f"target database(s) not empty: {desc}; rerun with --drop to replace the "
                            f"collections this backup holds (others are left alone), or --dry-run to see the plan")
    to_drop = {k: target[k[0]][k[1]] for k in sorted(ours) if k[1] in (target.get(k[0]) or {})} if drop else {}
    return Plan(wanted, {k: counts.get(k, 0) for k in ours}, to_drop, kept)


def plan_target(client, wanted: list[CollectionSpec], counts: dict[Namespace, int], drop: bool) -> Plan:
    """decide() with the target's collections and counts read from the server."""
    target: dict[str, dict[str, int]] = {}
    for db in sorted({i.db for i in wanted}):
        target[db] = {c: client[db][c].estimated_document_count()
                      for c in client[db].list_collection_names() if not c.startswith("system.")}
    return decide(wanted, counts, target, drop)


def prefixed(prefix: str, sel: namespaces.Selection, *keyed: dict) -> None:
    """Databases X into <prefix>X (a test restore's scratch databases): the selection's specs
    and targets, and (in place) every dict keyed by target (db, name)."""
    if not prefix:
        return
    sel.specs = [dataclasses.replace(i, db=prefix + i.db) for i in sel.specs]
    sel.data = {src: (prefix + db, c) for src, (db, c) in sel.data.items()}
    for d in keyed:
        for (db, c) in list(d):
            d[(prefix + db, c)] = d.pop((db, c))


def create_collections(client, plan: Plan, reporter: Reporter) -> None:
    """Time-series collections first, before anything else changes: the one thing a
    compatible server may refuse (FerretDB, DocumentDB) is refused on an untouched target."""
    existing = mongo.existing_counts(client, [(i.db, i.name) for i in plan.namespaces])
    new_ts = [i for i in plan.namespaces if i.type == "timeseries" and (i.db, i.name) not in existing]
    made = []
    for info in new_ts:
        try:
            mongo.create(client, info)
        except perr.OperationFailure as exc:
            for m in made:
                client[m.db].drop_collection(m.name)
            raise MenderBackupError(f"the target server cannot create the time-series collection "
                                    f"{info.namespace}: {exc.details.get('errmsg', exc) if exc.details else exc}"
                                    ) from None
        made.append(info)
    for (db, c), n in sorted(plan.to_drop.items()):
        reporter.info(f"dropping {db}.{c} ({n} documents)")
        client[db].drop_collection(c)
    existing = mongo.existing_counts(client, [(i.db, i.name) for i in plan.namespaces])
    try:
        for info in plan.namespaces:
            if (info.db, info.name) not in existing:
                mongo.create(client, info)
                made.append(info)
    except Exception:
        # options the server refuses (the archive's metadata): leave no half-made target behind
        for m in reversed(made):
            with contextlib.suppress(perr.PyMongoError):
                client[m.db].drop_collection(m.name)
        raise
