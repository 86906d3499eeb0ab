"""Users and roles, restored the way mongorestore restores them: the archive's
`admin.system.users` / `admin.system.roles` documents go into temporary collections,
then the server's `_mergeAuthzCollections` merges them (system.users cannot be written
directly). Only with --restore-users-and-roles; servers without that command (FerretDB,
DocumentDB) are refused before anything is written."""

from __future__ import annotations

import pymongo

from ..errors import MenderBackupError

TEMP = {"users": "tempusers", "roles": "temproles"}
PARAM = {"users": "tempUsersCollection", "roles": "tempRolesCollection"}


def check_supported(client: pymongo.MongoClient) -> None:
    commands = client.admin.command("listCommands").get("commands", {})
    if "_mergeAuthzCollections" not in commands:
        raise MenderBackupError("the target server cannot restore users and roles (it has no "
                                "_mergeAuthzCollections command); restore without --restore-users-and-roles")


def merge(client: pymongo.MongoClient, docs: dict[str, list], drop: bool) -> int:
    """`docs`: "users"/"roles" -> raw documents; returns how many were merged."""
    admin = client.admin
    args = {}
    try:
        for kind, batch in docs.items():
            if not batch:
                continue
            admin.drop_collection(TEMP[kind])
            admin[TEMP[kind]].insert_many(batch, ordered=True)
            args[PARAM[kind]] = f"admin.{TEMP[kind]}"
        if args:
            # db "": all databases, as mongorestore does for a full restore
            admin.command({"_mergeAuthzCollections": 1, **args, "drop": drop, "db": ""})
    finally:
        for kind in docs:
            admin.drop_collection(TEMP[kind])
    return sum(len(b) for b in docs.values())
