"""The oplog commands a replay applies, as mongorestore applies them (mongo-tools
mongorestore/oplog.go): what they change on the target, and in the index catalog.

The catalog holds the collections a restore owns and the indexes to build on them once
the replay is over: index commands change only the catalog (the indexes are built last,
so a unique index never meets the intermediate states the oplog passes through).
`dropDatabase` drops the collections the restore owns in that database, never the
target's other collections. Each handler gets the Replay (`r`): its catalog, and its
client and writer, which are None in a dry run.
"""

from __future__ import annotations

from pymongo import errors as perr

INDEX_DROPS = {"deleteIndex", "deleteIndexes", "dropIndex", "dropIndexes"}


class IndexCatalog:
    """The collections a restore owns and the indexes to build on them at the end."""

    def __init__(self) -> None:
        self.indexes: dict[tuple[str, str], list[dict]] = {}

    def add_collection(self, db: str, coll: str, indexes: list[dict] | None = None) -> None:
        self.indexes.setdefault((db, coll), [])
        for spec in indexes or []:
            self.add_index(db, coll, spec)

    def add_index(self, db: str, coll: str, spec: dict) -> None:
        specs = self.indexes.setdefault((db, coll), [])
        specs[:] = [s for s in specs if s.get("name") != spec.get("name")] + [dict(spec)]

    def drop_index(self, db: str, coll: str, which) -> None:
        specs = self.indexes.get((db, coll), [])
        names = which if isinstance(which, list) else [which]
        for w in names:
            if w == "*":
                specs[:] = [s for s in specs if s.get("name") == "_id_"]
            else:
                specs[:] = [s for s in specs if s.get("name") != w and s.get("key") != w]

    def modify_index(self, db: str, coll: str, change: dict) -> None:
        for s in self.indexes.get((db, coll), []):
            if s.get("name") == change.get("name") or ("keyPattern" in change and s.get("key") == change["keyPattern"]):
                s.update({k: v for k, v in change.items() if k not in ("name", "keyPattern")})

    def drop_collection(self, db: str, coll: str) -> None:
        self.indexes.pop((db, coll), None)

    def collections(self, db: str) -> list[str]:
        return sorted(c for d, c in self.indexes if d == db)

    def rename(self, src: tuple[str, str], dst: tuple[str, str]) -> None:
        self.indexes[dst] = self.indexes.pop(src, [])


def _create(r, db: str, coll: str, args: dict) -> None:
    opts = {k: v for k, v in args.items() if k not in ("create", "idIndex", "recordIdsReplicated")}
    r.catalog.add_collection(db, coll)
    try:
        r._run(db, {"create": coll, **opts})
    except perr.OperationFailure as exc:
        if exc.code != 48:       # NamespaceExists: the copy already has it
            raise


def _drop(r, db: str, coll: str, args: dict) -> None:
    r.catalog.drop_collection(db, coll)
    if r.writer is not None:
        r.client[db].drop_collection(coll)


def _drop_database(r, db: str, coll: str, args: dict) -> None:
    for c in r.catalog.collections(db):      # only what this restore owns there
        _drop(r, db, c, {})


def _create_indexes(r, db: str, coll: str, args: dict) -> None:
    r.catalog.add_index(db, coll, {k: v for k, v in args.items() if k != "createIndexes"})


def _commit_index_build(r, db: str, coll: str, args: dict) -> None:
    for spec in args.get("indexes") or []:
        r.catalog.add_index(db, coll, dict(spec))


def _drop_indexes(r, db: str, coll: str, args: dict) -> None:
    r.catalog.drop_index(db, coll, args.get("index", "*"))


def _coll_mod(r, db: str, coll: str, args: dict) -> None:
    rest = {k: v for k, v in args.items() if k not in ("collMod", "index", "noPadding", "usePowerOf2Sizes")}
    if "index" in args:
        r.catalog.modify_index(db, coll, dict(args["index"]))
    if rest:
        r._run(db, {"collMod": coll, **rest})


def _convert_to_capped(r, db: str, coll: str, args: dict) -> None:
    r._run(db, {"convertToCapped": coll, "size": args.get("size")})


def _empty_capped(r, db: str, coll: str, args: dict) -> None:
    if r.writer is not None:
        r.writer.delete_all(db, coll)


COMMANDS = {
    "create": _create, "drop": _drop, "dropDatabase": _drop_database, "createIndexes": _create_indexes,
    "commitIndexBuild": _commit_index_build, "collMod": _coll_mod, "convertToCapped": _convert_to_capped,
    "emptycapped": _empty_capped, **{n: _drop_indexes for n in INDEX_DROPS},
}
