"""Which namespaces of an archive a restore writes, and where, following mongorestore.

A full `mongodump` holds more than Mender's data: the admin database (users,
roles, and `admin.system.version`, which holds the auth schema and the feature
compatibility version of the server it came from), `config`, `system.*`
collections, the oplog (`--oplog`: database "" and collection "oplog"), and for a
time-series collection its metadata under its own name and its data under
`system.buckets.<name>` (until MongoDB 8.3, which keeps both under the name).

Rules: the system databases (admin, local, config) and `system.*` collections are
skipped and listed as such, except users and roles with --restore-users-and-roles;
a time-series collection is restored with its bucket data; the oplog is replayed
or reported as not replayed (engine/replay/). Databases left out by --db are
listed as skipped too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from ..format.archive import Prelude
from ..format.metadata import CollectionSpec
from ..mongo.client import SYSTEM_DATABASES

OPLOG = ("", "oplog")
BUCKETS = "system.buckets."
USERS_AND_ROLES = {("admin", "system.users"): "users", ("admin", "system.roles"): "roles"}


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("-")[0].split("+")[0].split(".")[:3])
    except ValueError:
        return ()


@dataclass
class Selection:
    specs: list[CollectionSpec] = field(default_factory=list)      # what is restored (metadata)
    data: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)   # archive ns -> target ns
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (namespace, why)
    auth: dict[str, tuple[str, str]] = field(default_factory=dict)  # "users"/"roles" -> archive ns
    has_oplog: bool = False

    def describe_skipped(self) -> list[dict]:
        return [{"namespace": ns, "reason": why} for ns, why in self.skipped]


def select(prelude: Prelude, databases: list[str], users_and_roles: bool) -> Selection:
    """Sort an archive's namespaces; malformed metadata is an integrity error (format/metadata)."""
    sel = Selection()
    wanted = set(databases)
    system = sorted(wanted & SYSTEM_DATABASES)
    if system:
        raise UsageError(f"{', '.join(system)}: system database(s) are never restored"
                         f"{' (users and roles: --restore-users-and-roles)' if 'admin' in system else ''}")
    listed = {(cm.db, cm.collection) for cm in prelude.collections}
    viewless = _version(prelude.header.server_version) >= (8, 3)   # time-series data under its own name
    specs = {(cm.db, cm.collection): CollectionSpec.from_json(cm.db, cm.collection, cm.metadata, cm.type)
             for cm in prelude.collections if (cm.db, cm.collection) != OPLOG}   # all checked, used or not
    for cm in prelude.collections:
        ns = (cm.db, cm.collection)
        name = f"{cm.db}.{cm.collection}"
        if ns == OPLOG:
            sel.has_oplog = True
            continue
        if ns in USERS_AND_ROLES:
            if users_and_roles:
                sel.auth[USERS_AND_ROLES[ns]] = ns
            else:
                sel.skipped.append((name, "users and roles: restored only with --restore-users-and-roles"))
            continue
        if cm.db in SYSTEM_DATABASES:
            sel.skipped.append((name, "system database"))
            continue
        if cm.collection.startswith(BUCKETS) and (cm.db, cm.collection[len(BUCKETS):]) in listed:
            continue                   # a time-series collection's data: follows its collection
        if cm.collection.startswith("system."):
            sel.skipped.append((name, "system collection"))
            continue
        if wanted and cm.db not in wanted:
            sel.skipped.append((name, "database not selected (--db)"))
            continue
        spec = specs[ns]
        sel.specs.append(spec)
        if spec.type == "timeseries":
            data = cm.collection if viewless else BUCKETS + cm.collection
            sel.data[(cm.db, data)] = (cm.db, data)
        elif spec.type != "view":
            sel.data[ns] = ns
    missing = sorted(wanted - {s.db for s in sel.specs})
    if missing:
        raise UsageError(f"database(s) not in the backup: {', '.join(missing)}")
    return sel
