"""`restore --archive` of mongodump archives of MongoDB 3.4 to 7.0, restored the way
mongorestore restores them (engine/namespaces.py): written byte by byte from spec.md
(tests/archives.py) for what FerretDB cannot produce, each test asserting what lands in
the target and what is reported as skipped."""

from __future__ import annotations

import datetime as dt

import bson
import pytest
from bson import ObjectId

from tests import archives, oplogs
from tests.cli import assert_one_line_error, result_of, run

VERSIONS = ["3.4", "4.0", "5.0", "7.0"]
DEVICES = [{"_id": f"dev-{i}", "status": "accepted", "id_data_sha256": bytes([i]) * 32}
           for i in range(5)]
INVENTORY = [{"_id": f"dev-{i}", "attributes": {"mac": {"value": f"00:11:22:33:44:{i:02x}"}}} for i in range(5)]


def mender_collections(v: str) -> tuple[list[dict], dict]:
    colls = [
        {"db": "deviceauth", "collection": "devices", "metadata": archives.metadata(v, "deviceauth", "devices", [
            archives.index(v, "deviceauth", "devices", "_id_", {"_id": 1}),
            archives.index(v, "deviceauth", "devices", "id_data_sha256_1", {"id_data_sha256": 1}, unique=True)])},
        {"db": "inventory", "collection": "devices", "metadata": archives.metadata(v, "inventory", "devices", [
            archives.index(v, "inventory", "devices", "_id_", {"_id": 1}),
            archives.index(v, "inventory", "devices", "mac", {"attributes.mac.value": 1.0})])},
    ]
    return colls, {("deviceauth", "devices"): DEVICES, ("inventory", "devices"): INVENTORY}


def full_dump(v: str) -> tuple[list[dict], dict]:
    """A full dump of a replica set with authentication: admin's users, roles and
    system.version (auth schema, feature compatibility version), and a system.js."""
    colls, bodies = mender_collections(v)
    admin = [("system.users", [{"_id": "admin.root", "user": "root", "db": "admin",
                                "credentials": {"SCRAM-SHA-256": {"iterationCount": 15000, "salt": "c2FsdA==",
                                                                  "storedKey": "a2V5", "serverKey": "a2V5"}},
                                "roles": [{"role": "root", "db": "admin"}]}]),
             ("system.roles", [{"_id": "admin.backupOnly", "role": "backupOnly", "db": "admin",
                                "privileges": [], "roles": [{"role": "backup", "db": "admin"}]}]),
             ("system.version", [{"_id": "authSchema", "currentVersion": 5},
                                 {"_id": "featureCompatibilityVersion", "version": v}])]
    for name, docs in admin:
        colls.append({"db": "admin", "collection": name,
                      "metadata": archives.metadata(v, "admin", name, [archives.index(v, "admin", name, "_id_",
                                                                                       {"_id": 1})])})
        bodies[("admin", name)] = docs
    colls.append({"db": "inventory", "collection": "system.js",
                  "metadata": archives.metadata(v, "inventory", "system.js", [])})
    bodies[("inventory", "system.js")] = [{"_id": "f", "value": bson.Code("function() { return 1; }")}]
    return colls, bodies


def restore(path, url, *args, check=True):
    return run("restore", "--archive", f"file://{path}", "--json", *args, env={"MONGODB_URL": url}, check=check)


def user_databases(client) -> list[str]:
    return sorted(set(client.list_database_names()) - {"admin", "local", "config"})


@pytest.mark.parametrize("version", VERSIONS)
def test_a_full_dump_restores_mender_data_and_lists_what_it_skips(version, new_ferretdb, tmp_path):
    target = new_ferretdb()
    client = target.client()
    admin_before = sorted(client.admin.list_collection_names())
    path = tmp_path / "full.archive"
    path.write_bytes(archives.write(version, *full_dump(version)))

    r = restore(path, target.url)
    res = result_of(r)
    assert res["verified"] is True
    assert {s["namespace"]: s["reason"] for s in res["skipped"]} == {
        "admin.system.users": "users and roles: restored only with --restore-users-and-roles",
        "admin.system.roles": "users and roles: restored only with --restore-users-and-roles",
        "admin.system.version": "system database",
        "inventory.system.js": "system collection",
    }
    assert [c["namespace"] for c in res["create"]] == ["deviceauth.devices", "inventory.devices"]
    assert user_databases(client) == ["deviceauth", "inventory"]
    assert list(client.deviceauth.devices.find(sort=[("_id", 1)])) == DEVICES
    assert list(client.inventory.devices.find(sort=[("_id", 1)])) == INVENTORY
    assert client.inventory.list_collection_names() == ["devices"]
    assert sorted(client.deviceauth.devices.index_information()) == ["_id_", "id_data_sha256_1"]
    assert client.deviceauth.devices.index_information()["id_data_sha256_1"]["unique"] is True
    assert sorted(client.inventory.devices.index_information()) == ["_id_", "mac"]
    assert sorted(client.admin.list_collection_names()) == admin_before      # never the target's auth data


def test_users_and_roles_only_on_request_and_refused_where_the_server_cannot(new_ferretdb, tmp_path):
    """FerretDB has no _mergeAuthzCollections: the explicit option fails before anything is written
    (on MongoDB the users and roles are merged as mongorestore merges them)."""
    target = new_ferretdb()
    path = tmp_path / "full.archive"
    path.write_bytes(archives.write("7.0", *full_dump("7.0")))
    r = restore(path, target.url, "--restore-users-and-roles", check=False)
    assert_one_line_error(r, 1, "cannot restore users and roles", "_mergeAuthzCollections")
    assert user_databases(target.client()) == []


def timeseries_dump() -> tuple[list[dict], dict]:
    v = "5.0"
    colls, bodies = mender_collections(v)
    colls.append({"db": "iot_manager", "collection": "readings", "type": "timeseries",
                  "metadata": archives.metadata(v, "iot_manager", "readings", [], kind="timeseries", options={
                      "timeseries": {"timeField": "ts", "metaField": "device", "granularity": "seconds",
                                     "bucketMaxSpanSeconds": 3600}})})
    when = dt.datetime(2026, 1, 1, 12, 0)
    buckets = [{"_id": ObjectId(), "control": {"version": 1, "min": {"ts": when, "temp": 20.5},
                                              "max": {"ts": when, "temp": 21.5}},
                "meta": f"dev-{i}", "data": {"ts": {"0": when, "1": when}, "temp": {"0": 20.5, "1": 21.5}}}
               for i in range(3)]
    bodies[("iot_manager", "system.buckets.readings")] = buckets    # the data, under its buckets collection
    return colls, bodies


def test_a_time_series_collection_is_read_and_refused_by_name_where_the_server_cannot(new_ferretdb, tmp_path):
    target = new_ferretdb()
    path = tmp_path / "ts.archive"
    path.write_bytes(archives.write("5.0", *timeseries_dump()))

    plan = result_of(restore(path, target.url, "--dry-run"))
    assert {"namespace": "iot_manager.readings", "type": "timeseries", "documents": 3, "indexes": []} in plan["create"]
    assert plan["skipped"] == []

    # FerretDB cannot create time-series collections: one line naming it, before any other write
    r = restore(path, target.url, check=False)
    line = assert_one_line_error(r, 1, "time-series collection iot_manager.readings")
    assert "corrupt" not in line
    assert user_databases(target.client()) == []

    # the rest restores without it
    res = result_of(restore(path, target.url, "--db", "deviceauth", "--db", "inventory"))
    assert {"namespace": "iot_manager.readings", "reason": "database not selected (--db)"} in res["skipped"]
    assert user_databases(target.client()) == ["deviceauth", "inventory"]


def oplog_dump() -> tuple[list[dict], dict, list[bytes]]:
    """`mongodump --oplog` of a 7.0 replica set: writes made while it ran, as 7.0 logs them."""
    v = "7.0"
    colls, bodies = mender_collections(v)
    colls.append({"db": "", "collection": "oplog", "metadata": "", "type": ""})
    entries = [
        oplogs.entry("n", "", {"msg": "periodic noop"}),
        oplogs.update_v2("deviceauth.devices", "dev-1", {"u": {"status": "rejected"}, "i": {"decommissioning": True}}),
        oplogs.delete("inventory.devices", "dev-4"),
        oplogs.insert("inventory.devices", {"_id": "dev-9", "attributes": {}}),
        oplogs.command("deviceauth", {"create": "tokens"}),
        oplogs.command("deviceauth", {"createIndexes": "tokens", "v": 2, "key": {"exp.time": 1},
                                      "name": "TokenExpiration"}),
        oplogs.insert("deviceauth.tokens", {"_id": "tok-1", "exp": {"time": dt.datetime(2026, 2, 1)}}),
        oplogs.insert("admin.system.users", {"_id": "admin.new"}),
        oplogs.update_v1("config.system.sessions", 1, {"$set": {"lastUse": 1}}),
    ]
    bodies[("", "oplog")] = entries
    return colls, bodies, entries


def test_an_oplog_archive_is_replayed_on_request_and_reported_otherwise(new_ferretdb, tmp_path):
    path = tmp_path / "oplog.archive"
    colls, bodies, _ = oplog_dump()
    path.write_bytes(archives.write("7.0", colls, bodies))

    plain = new_ferretdb()
    res = result_of(restore(path, plain.url))
    assert res["oplog"]["replay"] is False and "add --oplog-replay" in res["oplog"]["reason"]
    assert plain.client().deviceauth.devices.find_one({"_id": "dev-1"})["status"] == "accepted"
    assert plain.client().inventory.devices.count_documents({}) == 5

    dry = result_of(restore(path, new_ferretdb().url, "--oplog-replay", "--dry-run"))
    assert dry["oplog"]["replayed"]["applied"] == {"update": 1, "delete": 1, "insert": 2, "command": 2}
    assert dry["oplog"]["replayed"]["skipped"] == {"no-op": 1, "system database": 2}

    target = new_ferretdb()
    res = result_of(restore(path, target.url, "--oplog-replay"))
    assert res["verified"] is True and res["oplog"]["replayed"]["entries"] == 9
    c = target.client()
    assert c.deviceauth.devices.find_one({"_id": "dev-1"}) == {**DEVICES[1], "status": "rejected",
                                                               "decommissioning": True}
    assert sorted(d["_id"] for d in c.inventory.devices.find()) == ["dev-0", "dev-1", "dev-2", "dev-3", "dev-9"]
    assert c.deviceauth.tokens.find_one() == {"_id": "tok-1", "exp": {"time": dt.datetime(2026, 2, 1)}}
    assert sorted(c.deviceauth.tokens.index_information()) == ["TokenExpiration", "_id_"]
    assert sorted(c.admin.list_collection_names()) == sorted(plain.client().admin.list_collection_names())


def test_oplog_replay_of_an_archive_without_an_oplog_is_a_usage_error(new_ferretdb, tmp_path):
    target = new_ferretdb()
    path = tmp_path / "plain.archive"
    path.write_bytes(archives.write("5.0", *mender_collections("5.0")))
    assert_one_line_error(restore(path, target.url, "--oplog-replay", check=False), 2, "no oplog to replay")
    assert user_databases(target.client()) == []


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '{"indexes": [{"v": {"$numberInt": "two"}}]}'])
def test_malformed_metadata_is_an_integrity_error_naming_the_namespace(new_ferretdb, tmp_path, bad):
    target = new_ferretdb()
    colls, bodies = mender_collections("7.0")
    colls[1]["metadata"] = bad
    path = tmp_path / "bad.archive"
    path.write_bytes(archives.write("7.0", colls, bodies))
    r = restore(path, target.url, check=False)
    assert_one_line_error(r, 5, "malformed metadata for inventory.devices")
    assert user_databases(target.client()) == []
