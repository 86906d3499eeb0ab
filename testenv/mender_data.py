"""A Mender data set in Mender's real shape, from mender-server's sources
(backend/services/*/store/mongo): its databases (`deviceauth`, `useradm`, `inventory`,
`deployment_service`, `workflows`, `deviceconnect`, `deviceconfig`, `iot_manager`, and
the per-tenant `deployment_service-<tid>` and `inventory-<tid>`), a `migration_info`
collection in each, collection names with dots (`devices.logs`), Binary subtype-4 UUID
`_id`s (iot_manager's google/uuid codec), inventory's attribute keys with `.` and `$`
escaped as U+FF0E and U+FF04, Mender's index names and specs (unique compound, partial,
sparse, text, TTL), and an artifact bucket with `<tid>/` prefixes and `.tmp` leftovers of
interrupted uploads. Deterministic for a seed; `scale` multiplies every count.

Servers differ in what they accept: `Capabilities` says what the target takes, and the
generator leaves out the indexes it does not (FerretDB v1: no TTL, partial or text
indexes, no decimal128, no "." in field names, where it writes "_"; DocumentDB and
MongoDB take all), listed by `left_out`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import uuid
from dataclasses import dataclass

from bson import Binary, Int64, ObjectId
from bson.decimal128 import Decimal128


@dataclass(frozen=True)
class Capabilities:
    ttl: bool = True            # expireAfterSeconds
    partial: bool = True        # partialFilterExpression
    text: bool = True           # text indexes
    decimal128: bool = True
    dotted_fields: bool = True  # field names with "." (deployments' artifact provides, as Mender stores them)
    # unique indexes of more than one field: DocumentDB takes them but builds (and checks) them
    # in time quadratic in the documents (measured: 5,000 auth_sets 2 s, 10,000 7 s, 20,000 29 s),
    # so a benchmark of 1 GiB leaves them out (hours for either tool); tests keep them
    compound_unique: bool = True

    def accepts(self, keys: list, opts: dict) -> bool:
        return ((self.ttl or "expireAfterSeconds" not in opts)
                and (self.partial or "partialFilterExpression" not in opts)
                and (self.text or all(v != "text" for _, v in keys))
                and (self.compound_unique or not (opts.get("unique") and len(keys) > 1)))


MONGODB = Capabilities()
DOCUMENTDB = Capabilities()                      # FerretDB v2 on DocumentDB: all of them
DOCUMENTDB_BENCH = Capabilities(compound_unique=False)   # all but the quadratic ones (see above)
FERRETDB_V1 = Capabilities(ttl=False, partial=False, text=False, decimal128=False, dotted_fields=False)

TENANTS = ["5f8a2c3e4b1d7a0012ab34cd", "62b1e0f7c9a3d40019ef5678"]


def tenant(i: int) -> str:
    """The i-th tenant id (24 hex digits, as Mender's): one per document of per-tenant settings."""
    return TENANTS[i] if i < len(TENANTS) else f"{i:024x}"

# (database, collection) -> documents per unit of scale. "<tid>" databases exist once per tenant.
SHAPE = {
    ("deviceauth", "devices"): 200, ("deviceauth", "auth_sets"): 260, ("deviceauth", "tokens"): 150,
    ("deviceauth", "limits"): 2,
    ("useradm", "users"): 12, ("useradm", "tokens"): 20, ("useradm", "settings"): 2,
    ("useradm", "user_settings"): 5,
    ("inventory", "devices"): 200,
    ("deployment_service", "deployments"): 30, ("deployment_service", "devices"): 400,
    ("deployment_service", "devices.logs"): 60, ("deployment_service", "images"): 40,
    ("deployment_service", "releases"): 20,
    ("workflows", "jobs"): 300, ("workflows", "workflows"): 6,
    ("deviceconnect", "devices"): 200, ("deviceconnect", "sessions"): 80, ("deviceconnect", "recordings"): 20,
    ("deviceconfig", "devices"): 200,
    ("iot_manager", "integrations"): 2, ("iot_manager", "devices"): 50, ("iot_manager", "log"): 40,
    ("deployment_service-<tid>", "deployments"): 5, ("deployment_service-<tid>", "devices"): 20,
    ("deployment_service-<tid>", "devices.logs"): 5, ("deployment_service-<tid>", "images"): 5,
    ("inventory-<tid>", "devices"): 30,
    # collections only some Mender features fill (last: the documents above stay as they were)
    ("deployment_service", "uploads"): 4, ("deployment_service", "update_types"): 1,
    ("deviceconnect", "control"): 20,
}
# the migrations each service records in migration_info, one document each, oldest first, as
# mender-server v4.1.3's services write them on an empty database (`--automigrate`; read back
# by tests/test_mender_judges.py); the last is the service's DbVersion
MIGRATIONS = {
    "deviceauth": ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0", "1.9.0", "1.10.0",
                   "1.11.0", "2.0.0"],
    "useradm": ["1.0.0", "1.1.4", "1.3.2", "2.0.0", "2.0.1", "2.0.3"],
    "inventory": ["0.2.0", "1.0.0", "1.0.1", "1.0.2", "1.1.0"],
    "deployment_service": ["1.2.1", "1.2.2", "1.2.3", "1.2.4", "1.2.5", "1.2.6", "1.2.7", "1.2.9", "1.2.10",
                           "1.2.11", "1.2.13", "1.2.14", "1.2.15", "1.2.16", "1.2.17"],
    "workflows": ["1.0.0"], "deviceconnect": ["1.0.0", "2.0.1"], "deviceconfig": ["1.0.1"],
    "iot_manager": ["1.0.0", "1.1.0", "1.1.1", "1.2.0"],
}
VERSIONS = {service: history[-1] for service, history in MIGRATIONS.items()}   # their DbVersion constants


def _service(db: str) -> str:
    return db.split("-", 1)[0]


def databases() -> list[str]:
    out = []
    for db in dict.fromkeys(d for d, _ in SHAPE):
        out += [db.replace("<tid>", t) for t in TENANTS] if "<tid>" in db else [db]
    return out


BASE_COUNTS: dict[tuple[str, str], int] = {}
for _db, _coll in SHAPE:
    for _name in ([_db.replace("<tid>", t) for t in TENANTS] if "<tid>" in _db else [_db]):
        BASE_COUNTS[(_name, _coll)] = SHAPE[(_db, _coll)]
for _name in databases():
    BASE_COUNTS[(_name, "migration_info")] = len(MIGRATIONS[_name.split("-", 1)[0]])

U, D = 1, -1
# (service database, collection) -> [(keys, options)], as the services' migrations create them:
# exactly the set mender-server v4.1.3 builds on an empty database (tests/test_mender_judges.py)
INDEXES = {
    ("deviceauth", "devices"): [
        ([("tenant_id", U), ("id_data_sha256", U)], {"name": "tenant_id_id_data_sha256", "unique": True}),
        ([("tenant_id", U), ("status", U), ("_id", U)], {"name": "tenant_id_status__id"})],
    ("deviceauth", "auth_sets"): [
        ([("tenant_id", U), ("id_data_sha256", U), ("pubkey", U)],
         {"name": "tenant_id_id_data_sha256_pubkey", "unique": True}),
        ([("tenant_id", U), ("device_id", U)], {"name": "tenant_id_device_id"})],
    ("deviceauth", "limits"): [([("tenant_id", U), ("name", U)], {"name": "tenant_id_name", "unique": True})],
    ("deviceauth", "tokens"): [
        ([("mender.tenant", U), ("sub", U)], {"name": "mender_tenant_sub"}),
        ([("exp.time", U)], {"name": "exp_time", "expireAfterSeconds": 0})],
    ("useradm", "users"): [([("email", U)], {"name": "email_1", "unique": True})],
    ("useradm", "tokens"): [
        ([("tenant_id", U), ("sub", U), ("name", U)],
         {"name": "tenant_1_subject_1_name_1", "unique": True, "partialFilterExpression": {"name": {"$exists": True}}}),
        ([("tenant_id", U), ("sub", U)], {"name": "tenant_1_subject_1"}),
        ([("exp.time", U)], {"name": "exp_time", "expireAfterSeconds": 0})],
    ("useradm", "settings"): [([("tenant_id", U)], {"name": "tenant", "unique": True})],
    ("useradm", "user_settings"): [([("tenant_id", U), ("user_id", U)], {"name": "tenant", "unique": True})],
    ("inventory", "devices"): [
        *(([("attributes.identity-status.value", U), (f"attributes.{a}.value", U)], {"name": a})
          for a in ("identity-mac", "inventory-device_type", "system-group", "system-updated_ts")),
        ([("text", "text")], {"name": "text"})],
    ("deployment_service", "deployments"): [
        ([("deploymentconstructor.name", "text"), ("deploymentconstructor.artifactname", "text")],
         {"name": "deploymentArtifactNameIndex"}),
        ([("created", D)], {"name": "deploymentCreated"}),
        ([("finished", U)], {"name": "deploymentsFinished"}),
        ([("status", U)], {"name": "deploymentStatus"}),
        ([("active", U), ("created", U)], {"name": "active_created:v2", "sparse": True}),
        ([("deploymentconstructor_checksum", U)],
         {"name": "deployment_deploymentconstructor_checksum", "unique": True,
          "partialFilterExpression": {"deploymentconstructor_checksum": {"$exists": True}, "active": True}}),
        ([("deploymentconstructor.name", U), ("created", U)], {"name": "deployment_name"})],
    ("deployment_service", "devices"): [
        ([("deviceid", U), ("status", U)], {"name": "devicesIdWithStatus"}),
        ([("deviceid", U), ("created", U), ("status", U)], {"name": "devicesIdWithCreatedStatus"}),
        ([("deploymentid", U), ("deviceid", U)], {"name": "devicesDeploymentId"}),
        ([("deploymentid", U), ("status", U), ("deviceid", U)], {"name": "deploymentid_status_deviceid"}),
        ([("active", U), ("deviceid", U), ("created", U)], {"name": "active_deviceid_created"})],
    ("deployment_service", "devices.logs"): [([("deploymentid", U), ("deviceid", U)], {"name": "devices_logs"})],
    ("deployment_service", "images"): [
        ([("meta_artifact.name", U), ("meta_artifact.depends_idx", U)],
         {"name": "artifactNameDepends", "unique": True}),
        ([("meta.description", U)], {"name": "image_meta_description"}),
        ([("meta_artifact.device_types_compatible", U)], {"name": "image_meta_artifact_device_type_compatible"}),
        ([("meta_artifact.provides_idx.key", U), ("meta_artifact.provides_idx.value", U)],
         {"name": "artifact_provides", "sparse": True})],
    ("deployment_service", "releases"): [
        ([("tags", U), ("modified", D)], {"name": "release_tags"}),
        ([("artifacts.meta_artifact.updates.typeinfo.type", U)], {"name": "release_update_types", "sparse": True}),
        ([("artifacts_count", U)], {"name": "release_artifacts_count"})],
    ("deployment_service", "update_types"): [
        ([("tenant_id", U)], {"name": "aggregated_release_update_types", "unique": True})],
    ("deployment_service", "uploads"): [([("status", U), ("expire", U)], {"name": "UploadExpire"})],
    ("workflows", "jobs"): [([("status", U)], {"name": "status"}), ([("workflow_name", U)], {"name": "workflow_name"})],
    ("deviceconnect", "sessions"): [([("tenant_id", U), ("device_id", U)], {"name": "tenant_id_device_id"})],
    ("deviceconnect", "control"): [([("tenant_id", U), ("session_id", U)], {"name": "tenant_id_session_id"})],
    ("deviceconnect", "recordings"): [
        ([("tenant_id", U), ("session_id", U)], {"name": "tenant_id_session_id"}),
        ([("expire_ts", U)], {"name": "RecordingExpire", "expireAfterSeconds": 0})],
    ("deviceconfig", "devices"): [([("tenant_id", U), ("_id", U)], {"name": "tenant_id__id"})],
    ("iot_manager", "integrations"): [
        ([("tenant_id", U), ("provider", U), ("_id", U)], {"name": "tenant_id_provider__id"}),
        ([("tenant_id", U)], {"name": "integration_one_per_tenant", "unique": True})],
    ("iot_manager", "devices"): [
        ([("tenant_id", U), ("integration_ids", U), ("_id", U)], {"name": "tenant_id_integration_ids__id"})],
    ("iot_manager", "log"): [
        ([("tenant_id", U), ("event_ts", D)], {"name": "tenant_id__id"}),
        ([("expire_ts", U)], {"name": "log_TTL", "expireAfterSeconds": 0})],
}

DEVICE_TYPES = ["raspberrypi4", "beaglebone-yocto", "qemux86-64", "imx8mm-var-dart", "jetson-nano"]
STATUSES = ["accepted", "pending", "rejected", "preauthorized", "noauth"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def indexes_for(db: str, coll: str) -> list[tuple[list, dict]]:
    return INDEXES.get((_service(db), coll), [])


def left_out(caps: Capabilities) -> list[str]:
    """What a server with these capabilities does not get: indexes as db.collection:name,
    and the values and field names it cannot store."""
    out = [f"{db}.{coll}:{opts['name']}" for (db, coll), specs in INDEXES.items()
           for keys, opts in specs if not caps.accepts(keys, opts)]
    if not caps.decimal128:
        out.append("deployment_service.images: decimal128 values")
    if not caps.dotted_fields:
        out.append("deployment_service.images: '.' in field names (written as '_')")
    return out


@dataclass
class DataSet:
    documents: dict[tuple[str, str], int]
    artifacts: dict[str, bytes]


class _Gen:
    def __init__(self, seed: int, caps: Capabilities):
        self.r = random.Random(seed)
        self.caps = caps
        self.devices: list[str] = []

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def binary_uuid(self) -> Binary:
        return Binary.from_uuid(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def ts(self) -> dt.datetime:
        return (T0 + dt.timedelta(seconds=self.r.randrange(0, 300 * 86400),
                                  milliseconds=self.r.randrange(1000))).replace(tzinfo=None)

    def expires(self, days: int) -> dt.datetime:
        """A TTL field's date: on a server that applies TTL indexes, documents that expired
        would vanish mid-test (the source changing under a comparison): far ahead there.
        tests/test_mender_restore.py makes expired ones on purpose."""
        return self.ts() + dt.timedelta(days=days + (36500 if self.caps.ttl else 0))

    def mac(self) -> str:
        return ":".join(f"{self.r.randrange(256):02x}" for _ in range(6))

    def blob(self, n: int) -> bytes:
        return self.r.randbytes(n)

    def device_id(self) -> str:
        return self.r.choice(self.devices) if self.devices else self.uuid()

    def device_at(self, i: int) -> str:
        """The i-th device: collections keyed by device id hold each device once."""
        return self.devices[i] if i < len(self.devices) else self.uuid()

    def doc(self, db: str, coll: str, i: int) -> dict:
        tid = db.split("-", 1)[1] if "-" in db else ""
        return getattr(self, "_" + (_service(db) + "_" + coll).replace(".", "_"))(i, tid)

    # -- deviceauth
    def _deviceauth_devices(self, i: int, tid: str) -> dict:
        did = self.uuid()
        self.devices.append(did)
        mac = self.mac()
        id_data = f'{{"mac":"{mac}","sku":"SKU-{i:05d}"}}'
        return {"_id": did, "id_data": id_data, "id_data_struct": {"mac": mac, "sku": f"SKU-{i:05d}"},
                "id_data_sha256": Binary(hashlib.sha256(id_data.encode()).digest()),
                "status": self.r.choice(STATUSES), "decommissioning": self.r.random() < 0.02,
                "created_ts": self.ts(), "updated_ts": self.ts(), "auth_sets_count": self.r.randint(1, 3),
                "tenant_id": self.r.choice(["", *TENANTS])}

    def _deviceauth_auth_sets(self, i: int, tid: str) -> dict:
        pem = "-----BEGIN PUBLIC KEY-----\n" + self.blob(270).hex() + "\n-----END PUBLIC KEY-----\n"
        return {"_id": self.uuid(), "device_id": self.device_id(), "id_data_sha256": Binary(self.blob(32)),
                "pubkey": pem, "status": self.r.choice(STATUSES), "ts": self.ts(), "tenant_id": ""}

    def _deviceauth_tokens(self, i: int, tid: str) -> dict:
        return {"_id": self.uuid(), "sub": self.device_id(), "exp": {"time": self.expires(7)},
                "iat": {"time": self.ts()}, "iss": "Mender", "scp": "mender.*", "mender": {"tenant": "", "device": True}}

    def _deviceauth_limits(self, i: int, tid: str) -> dict:
        return {"_id": ObjectId(self.blob(12)), "tenant_id": tenant(i), "name": "max_devices",
                "value": Int64(-1 if i else 1000)}

    # -- useradm
    def _useradm_users(self, i: int, tid: str) -> dict:
        return {"_id": self.uuid(), "email": f"user{i}@example.com", "password": "$2a$10$" + self.blob(24).hex(),
                "created_ts": self.ts(), "updated_ts": self.ts(), "login_ts": self.ts(), "tenant_id": ""}

    def _useradm_tokens(self, i: int, tid: str) -> dict:
        doc = {"_id": self.uuid(), "sub": self.uuid(), "exp": {"time": self.expires(0)}, "iat": {"time": self.ts()},
               "tenant_id": "", "user": True, "iss": "Mender", "scp": "mender.*"}
        if i % 2:                                # personal access tokens have a name
            doc.update(name=f"pat-{i}", last_used=self.ts())
        return doc

    def _useradm_settings(self, i: int, tid: str) -> dict:
        return {"_id": ObjectId(self.blob(12)), "tenant_id": tenant(i), "etag": self.uuid(),
                "2fa": "enabled" if i else "disabled"}

    def _useradm_user_settings(self, i: int, tid: str) -> dict:
        return {"_id": ObjectId(self.blob(12)), "user_id": self.uuid(), "tenant_id": "",
                "settings": {"columnSelection": [{"id": "identity_mac", "key": "mac"}]}}

    # -- inventory
    def _inventory_devices(self, i: int, tid: str) -> dict:
        r = self.r

        def attr(scope: str, name: str, value) -> tuple[str, dict]:
            # Mender's escaping of attribute names in keys (model.GetDeviceAttributeNameReplacer)
            key = f"{scope}-" + name.replace(".", "\uff0e").replace("$", "\uff04")
            return key, {"name": name, "value": value, "scope": scope}

        attrs = dict([
            attr("identity", "mac", self.mac()),
            attr("inventory", "device_type", r.choice(DEVICE_TYPES)),
            attr("inventory", "artifact_name", f"release-{r.randint(1, 40)}"),
            attr("inventory", "rootfs-image.version", f"release-{r.randint(1, 40)}"),
            attr("inventory", "mender$tenant", tid or "none"),
            attr("inventory", "ipv4_eth0", [f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}/24"]),
            attr("inventory", "mem_total_kB", float(r.choice([1024000, 2048000, 4096000]))),
            attr("system", "group", r.choice(["", "prod", "test", "lab"])),
            attr("system", "created_ts", self.ts()),
        ])
        return {"_id": self.device_at(i), "attributes": attrs, "revision": Int64(r.randrange(1, 2**40)),
                "updated_ts": self.ts(), "text": " ".join(r.choice(DEVICE_TYPES) for _ in range(4)),
                "identities": [self.mac()]}

    # -- deployment_service (and deployment_service-<tid>)
    def _deployment_service_deployments(self, i: int, tid: str) -> dict:
        r = self.r
        stats = {s: r.randint(0, 50) for s in ("success", "failure", "pending", "downloading", "installing")}
        return {"_id": self.uuid(),
                "deploymentconstructor": {"name": f"rollout {i}", "artifactname": f"release-{i}",
                                          "devices": [self.device_id() for _ in range(r.randint(0, 4))]},
                "created": self.ts(), "finished": self.ts() if r.random() < .7 else None, "stats": stats,
                "status": r.choice(["finished", "inprogress", "pending"]), "active": r.random() < .3,
                "device_count": Int64(sum(stats.values())), "max_devices": r.randint(0, 100),
                "type": "software", "configuration": Binary(self.blob(r.randint(0, 64)))}

    def _deployment_service_devices(self, i: int, tid: str) -> dict:
        r = self.r
        return {"_id": self.uuid(), "deploymentid": self.uuid(), "deviceid": self.device_id(),
                "status": r.choice(["success", "failure", "pending", "downloading"]), "active": r.random() < .2,
                "created": self.ts(), "finished": self.ts(), "devicetype": r.choice(DEVICE_TYPES),
                "log": r.random() < .1, "attempts": r.randint(1, 3),
                "image": {"id": self.uuid(), "size": Int64(r.randrange(10**6, 10**9))}}

    def _deployment_service_devices_logs(self, i: int, tid: str) -> dict:
        r = self.r
        return {"_id": self.uuid(), "deploymentid": self.uuid(), "deviceid": self.device_id(),
                "messages": [{"timestamp": self.ts(), "level": r.choice(["info", "error"]),
                              "message": "installing update " * r.randint(1, 20)} for _ in range(r.randint(1, 10))]}

    def _deployment_service_images(self, i: int, tid: str) -> dict:
        r = self.r
        name = f"release-{i}"
        types = r.sample(DEVICE_TYPES, 2)
        doc = {"_id": self.uuid(), "meta": {"description": f"build {i}"},
               "meta_artifact": {"name": name, "device_types_compatible": types,
                                 "info": {"format": "mender", "version": 3}, "signed": r.random() < .5,
                                 "updates": [{"type_info": {"type": "rootfs-image"},
                                              "files": [{"name": "rootfs.ext4", "checksum": self.blob(32).hex(),
                                                         "size": Int64(r.randrange(10**7, 10**9))}]}],
                                 "provides": {"rootfs-image" + ("." if self.caps.dotted_fields else "_")
                                              + "version": name},
                                 "depends_idx": [{"device_type": t} for t in types]},
               "size": Int64(r.randrange(10**6, 10**9)), "modified": self.ts()}
        if i % 3:      # artifact_provides is sparse: some images have no provides index
            doc["meta_artifact"]["provides_idx"] = [{"key": "rootfs-image.version", "value": name}]
        if self.caps.decimal128:
            doc["meta_artifact"]["price"] = Decimal128(f"{r.randint(0, 9999)}.{r.randint(0, 99):02d}")
        return doc

    def _deployment_service_releases(self, i: int, tid: str) -> dict:
        return {"_id": f"release-{i}", "name": f"release-{i}", "artifacts_count": self.r.randint(1, 4),
                "modified": self.ts(), "tags": self.r.sample(["prod", "beta", "lts"], 1)}

    def _deployment_service_uploads(self, i: int, tid: str) -> dict:
        # an upload intent (deployments' model.UploadLink): its status is a number (LinkStatus)
        return {"_id": self.uuid(), "uri": f"http://s3.example.com/mender-artifacts/{self.uuid()}",
                "expire": self.expires(1), "tenant_id": "", "issued_ts": self.ts(), "updated_ts": self.ts(),
                "status": self.r.choice([0, 16, 32, 48]) | 128}

    def _deployment_service_update_types(self, i: int, tid: str) -> dict:
        return {"_id": ObjectId(self.blob(12)), "tenant_id": "" if i == 0 else tenant(i),
                "update_types": ["rootfs-image", "single-file"][: 1 + i % 2]}

    # -- workflows
    def _workflows_jobs(self, i: int, tid: str) -> dict:
        return {"_id": ObjectId(self.blob(12)),
                "workflow_name": self.r.choice(["provision_device", "decommission_device", "update_device_inventory"]),
                "input_parameters": [{"name": "device_id", "value": self.device_id()},
                                     {"name": "request_id", "value": self.uuid()}],
                "status": self.r.randint(0, 3), "insert_time": self.ts(),
                "results": [{"name": "task_1", "type": "http", "success": True,
                             "http_response": {"status_code": 200, "body": "{}"}}]}

    def _workflows_workflows(self, i: int, tid: str) -> dict:
        return {"_id": f"workflow-{i}", "name": f"workflow-{i}", "version": 1, "schemaversion": 1,
                "tasks": [{"name": "t1", "type": "http", "http": {"uri": "http://deviceauth:8080/x", "method": "GET"}}]}

    # -- deviceconnect
    def _deviceconnect_devices(self, i: int, tid: str) -> dict:
        return {"_id": self.device_at(i), "status": self.r.choice(["connected", "disconnected"]),
                "created_ts": self.ts(), "updated_ts": self.ts(), "tenant_id": ""}

    def _deviceconnect_sessions(self, i: int, tid: str) -> dict:
        return {"_id": self.uuid(), "device_id": self.device_id(), "user_id": self.uuid(), "tenant_id": "",
                "start_ts": self.ts(), "types": ["shell"]}

    def _deviceconnect_recordings(self, i: int, tid: str) -> dict:
        return {"_id": ObjectId(self.blob(12)), "session_id": self.uuid(), "tenant_id": "",
                "recording": Binary(self.blob(self.r.randint(100, 2000))), "created_ts": self.ts(),
                "expire_ts": self.expires(30)}

    def _deviceconnect_control(self, i: int, tid: str) -> dict:
        return {"_id": ObjectId(self.blob(12)), "session_id": self.uuid(), "tenant_id": "",
                "control": Binary(self.blob(self.r.randint(20, 200))), "created_ts": self.ts(),
                "expire_ts": self.expires(30)}

    # -- deviceconfig
    def _deviceconfig_devices(self, i: int, tid: str) -> dict:
        cfg = [{"key": f"key{k}", "value": f"value{self.r.randrange(1000)}"} for k in range(self.r.randint(0, 8))]
        return {"_id": self.device_at(i), "tenant_id": "", "configured": cfg, "reported": list(cfg),
                "updated_ts": self.ts(), "reported_ts": self.ts()}

    # -- iot_manager: google/uuid values are Binary subtype 4 (pkg/mongo/codec)
    def _iot_manager_integrations(self, i: int, tid: str) -> dict:
        return {"_id": self.binary_uuid(), "tenant_id": tenant(i), "provider": "iot-hub",
                "credentials": {"type": "connection_string", "connection_string": "HostName=x;SharedAccessKey=y"}}

    def _iot_manager_devices(self, i: int, tid: str) -> dict:
        return {"_id": self.device_at(i), "tenant_id": TENANTS[i % 2], "integration_ids": [self.binary_uuid()]}

    def _iot_manager_log(self, i: int, tid: str) -> dict:
        return {"_id": self.binary_uuid(), "tenant_id": TENANTS[i % 2], "integration_id": self.binary_uuid(),
                "type": "device-provisioned", "event_ts": self.ts(), "expire_ts": self.expires(7),
                "data": {"device_id": self.device_id()}}


def _migration_info(db: str) -> list[dict]:
    """One document per migration, as Mender's migrator writes them on an empty database."""
    out = []
    for k, version in enumerate(MIGRATIONS[_service(db)]):
        major, minor, patch = (int(x) for x in version.split("."))
        out.append({"_id": ObjectId(hashlib.sha256(f"{db} {version}".encode()).digest()[:12]),
                    "version": {"major": major, "minor": minor, "patch": patch},
                    "timestamp": dt.datetime(2026, 1, 1, 0, 0, 0) + dt.timedelta(milliseconds=20 * k)})
    return out


def documents(scale: float = 1.0, seed: int = 1, capabilities: Capabilities = FERRETDB_V1):
    """Yield (db, collection, [docs]) in an order that keeps device ids consistent."""
    gen = _Gen(seed, capabilities)
    for (db, coll), base in BASE_COUNTS.items():
        n = max(1, int(base * scale))
        if coll == "migration_info":
            yield db, coll, _migration_info(db)
        else:
            yield db, coll, [gen.doc(db, coll, i) for i in range(n)]


def seed_mongo(client, scale: float = 1.0, seed: int = 1, full_mongodb: bool = False,
               batch: int = 1000, capabilities: Capabilities | None = None,
               indexes_last: bool = False) -> dict[tuple[str, str], int]:
    """Create the indexes and insert the documents; returns counts per namespace. The
    indexes and values a server cannot take are left out (`capabilities`: FerretDB v1's
    unless given; `full_mongodb` is MongoDB's). `indexes_last` builds them after the
    inserts (as a restore does: much faster on DocumentDB for a large data set)."""
    caps = capabilities or (MONGODB if full_mongodb else FERRETDB_V1)
    counts = {}

    def make_indexes() -> None:
        for db, coll in BASE_COUNTS:
            for keys, opts in indexes_for(db, coll):
                if caps.accepts(keys, opts):
                    client[db][coll].create_index(keys, **opts)

    if not indexes_last:
        make_indexes()
    for db, coll, docs in documents(scale, seed, caps):
        for i in range(0, len(docs), batch):
            client[db][coll].insert_many(docs[i:i + batch], ordered=False)
        counts[(db, coll)] = len(docs)
    if indexes_last:
        make_indexes()
    return counts


def artifact_objects(scale: float = 1.0, seed: int = 2, count: int | None = None):
    """Yield (key, bytes): Mender artifact keys are image UUIDs, under `<tid>/` for tenants;
    sizes are mixed, mostly small with a few that need a multipart upload; a few `.tmp`
    objects are what interrupted uploads leave behind."""
    r = random.Random(seed)
    n = count if count is not None else max(1, int(20 * scale))
    for i in range(n):
        roll = r.random()
        size = (r.randrange(1, 64 * 1024) if roll < .7 else
                r.randrange(64 * 1024, 2 * 1024 * 1024) if roll < .95 else
                r.randrange(9 * 1024 * 1024, 12 * 1024 * 1024))
        key = str(uuid.UUID(int=r.getrandbits(128), version=4))
        if i % 3 == 1:
            key = f"{TENANTS[i % 2]}/{key}"
        if i % 10 == 9:
            key += ".tmp"
        yield key, r.randbytes(size)


def seed_bucket(s3, bucket: str, scale: float = 1.0, seed: int = 2, count: int | None = None) -> dict[str, int]:
    """Create the bucket (if needed) and upload artifacts; returns key -> size."""
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    sizes = {}
    for key, data in artifact_objects(scale, seed, count):
        s3.upload_fileobj(io.BytesIO(data), bucket, key)
        sizes[key] = len(data)
    return sizes
