"""What a backup records about the Mender that wrote its data, so a restore can refuse
data from a newer Mender than the one it would run under: each database's schema
version (the `migration_info` collection every Mender service keeps: documents
`{"version": {"major", "minor", "patch"}, ...}`, one per migration applied) and, when
the chart passes them, the Mender release's chart version and appVersion."""

from __future__ import annotations

import re

MIGRATIONS = "migration_info"


def version_key(version: str) -> tuple[int, ...]:
    """'v4.0.1', '4.0.1-rc1', '3.7' -> comparable numbers (pre-release tags ignored)."""
    return tuple(int(x) for x in re.findall(r"\d+", version.lstrip("vV").split("-")[0].split("+")[0])[:3])


def migration_versions(client, databases: list[str]) -> dict[str, str]:
    """database -> the newest migration applied to it, for databases that have any."""
    out = {}
    for db in databases:
        if MIGRATIONS not in client[db].list_collection_names():
            continue
        best: tuple[int, ...] | None = None
        for doc in client[db][MIGRATIONS].find({}, {"version": 1}):
            v = doc.get("version") or {}
            if isinstance(v, dict):
                key = (int(v.get("major", 0)), int(v.get("minor", 0)), int(v.get("patch", 0)))
                best = key if best is None or key > best else best
        if best is not None:
            out[db] = ".".join(map(str, best))
    return out


def newer_than(backup: dict, app_version: str | None, live_migrations: dict[str, str]) -> list[str]:
    """Why the backup's data is from a newer Mender than the one that would run it
    (empty: it is not, or nothing says so)."""
    why = []
    theirs = backup.get("app_version")
    if theirs and app_version and version_key(theirs) > version_key(app_version):
        why.append(f"written by Mender {theirs}, the release runs {app_version}")
    for db, v in sorted((backup.get("migrations") or {}).items()):
        live = live_migrations.get(db)
        if live and version_key(v) > version_key(live):
            why.append(f"{db} is at schema {v}, the running Mender's is {live}")
    return why
