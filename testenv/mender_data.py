"""A realistic Mender data set: the databases Mender Server keeps in MongoDB,
documents shaped like its services write them, their indexes, and an artifact
bucket of objects of mixed sizes. Deterministic for a seed; `scale` multiplies
every count.
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

# (database, collection) -> documents per unit of scale
BASE_COUNTS = {
    ("deviceauth", "devices"): 200,
    ("deviceauth", "auth_sets"): 260,
    ("deviceauth", "tokens"): 150,
    ("inventory", "devices"): 200,
    ("deployments", "deployments"): 30,
    ("deployments", "devices"): 400,
    ("deployments", "images"): 40,
    ("deployments", "device_deployment_logs"): 60,
    ("useradm", "users"): 12,
    ("useradm", "tokens"): 20,
    ("workflows", "jobs"): 300,
    ("deviceconnect", "devices"): 200,
    ("deviceconnect", "sessions"): 80,
    ("deviceconfig", "devices"): 200,
}

# (database, collection) -> [(keys, options)]
INDEXES = {
    ("deviceauth", "devices"): [([("id_data_sha256", 1)], {"unique": True, "name": "id_data_sha256_1"}),
                                ([("status", 1), ("created_ts", -1)], {"name": "status_created"})],
    ("deviceauth", "auth_sets"): [([("device_id", 1), ("id_data_sha256", 1), ("pubkey", 1)],
                                   {"unique": True, "name": "auth_sets_device_pubkey"})],
    ("deviceauth", "tokens"): [([("exp.time", 1)], {"name": "TokenExpiration", "expireAfterSeconds": 0})],
    ("inventory", "devices"): [([("attributes.identity-mac.value", 1)], {"name": "mac"}),
                               ([("group", 1), ("updated_ts", -1)], {"name": "group_updated"})],
    ("deployments", "devices"): [([("deploymentid", 1), ("status", 1)], {"name": "deployment_status"}),
                                 ([("deviceid", 1), ("created", -1)], {"name": "device_created"})],
    ("deployments", "images"): [([("meta_artifact.name", 1)], {"name": "artifact_name"})],
    ("useradm", "users"): [([("email", 1)], {"unique": True, "name": "email_1"})],
    ("workflows", "jobs"): [([("status", 1), ("insert_time", 1)], {"name": "status_insert_time"})],
    ("deviceconnect", "sessions"): [([("device_id", 1)], {"name": "device_id_1"})],
}

# what only a server with MongoDB's index semantics takes (DocumentDB, not FerretDB v1):
# Mender's text search of deployments, a partial and a sparse index
FULL_MONGODB_INDEXES = {
    ("deployments", "deployments"): [([("deploymentconstructor.name", "text"),
                                       ("deploymentconstructor.artifactname", "text")],
                                      {"name": "deploymentconstructor.name_text_deploymentconstructor.artifactname_text"})],
    ("deviceauth", "devices"): [([("status", 1)], {"name": "pending_only",
                                                  "partialFilterExpression": {"status": "pending"}})],
    ("deployments", "devices"): [([("finished", 1)], {"name": "finished_sparse", "sparse": True})],
}

DEVICE_TYPES = ["raspberrypi4", "beaglebone-yocto", "qemux86-64", "imx8mm-var-dart", "jetson-nano"]
STATUSES = ["accepted", "pending", "rejected", "preauthorized", "noauth"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class DataSet:
    documents: dict[tuple[str, str], int]
    artifacts: dict[str, bytes]


class _Gen:
    def __init__(self, seed: int, full_mongodb: bool):
        self.r = random.Random(seed)
        self.full_mongodb = full_mongodb
        self.devices = []

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def ts(self) -> dt.datetime:
        return (T0 + dt.timedelta(seconds=self.r.randrange(0, 300 * 86400),
                                  milliseconds=self.r.randrange(1000))).replace(tzinfo=None)

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
        r = self.r
        if (db, coll) == ("deviceauth", "devices"):
            did = self.uuid()
            self.devices.append(did)
            mac = self.mac()
            id_data = f'{{"mac":"{mac}","sku":"SKU-{i:05d}"}}'
            return {"_id": did, "id_data": id_data, "id_data_struct": {"mac": mac, "sku": f"SKU-{i:05d}"},
                    "id_data_sha256": Binary(hashlib.sha256(id_data.encode() + did.encode()).digest()),
                    "status": r.choice(STATUSES), "decommissioning": r.random() < 0.02,
                    "created_ts": self.ts(), "updated_ts": self.ts(), "auth_sets_count": r.randint(1, 3),
                    "tenant_id": ""}
        if (db, coll) == ("deviceauth", "auth_sets"):
            key = self.blob(270)
            pem = "-----BEGIN PUBLIC KEY-----\n" + key.hex() + "\n-----END PUBLIC KEY-----\n"
            return {"_id": self.uuid(), "device_id": self.device_id(), "id_data_sha256": Binary(self.blob(32)),
                    "pubkey": pem, "status": r.choice(STATUSES), "ts": self.ts()}
        if (db, coll) == ("deviceauth", "tokens"):
            # on a server that applies TTL indexes, expired tokens vanish mid-test: keep them valid there
            valid = dt.timedelta(days=7 + (36500 if self.full_mongodb else 0))
            return {"_id": self.uuid(), "sub": self.device_id(), "exp": {"time": self.ts() + valid},
                    "iss": "Mender", "scp": "mender.*", "device": True, "tenant_id": ""}
        if (db, coll) == ("inventory", "devices"):
            attrs = {
                "identity-mac": {"name": "mac", "scope": "identity", "value": self.mac()},
                "inventory-device_type": {"name": "device_type", "scope": "inventory",
                                          "value": r.choice(DEVICE_TYPES)},
                "inventory-artifact_name": {"name": "artifact_name", "scope": "inventory",
                                            "value": f"release-{r.randint(1, 40)}"},
                "inventory-ipv4_eth0": {"name": "ipv4_eth0", "scope": "inventory",
                                        "value": [f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}/24"]},
                "inventory-mem_total_kB": {"name": "mem_total_kB", "scope": "inventory",
                                           "value": float(r.choice([1024000, 2048000, 4096000]))},
                "system-created_ts": {"name": "created_ts", "scope": "system", "value": self.ts()},
            }
            return {"_id": self.device_at(i), "attributes": attrs, "group": r.choice(["", "prod", "test", "lab"]),
                    "created_ts": self.ts(), "updated_ts": self.ts(), "revision": Int64(r.randrange(1, 2**40)),
                    "text": " ".join(r.choice(DEVICE_TYPES) for _ in range(4))}
        if (db, coll) == ("deployments", "deployments"):
            stats = {s: r.randint(0, 50) for s in ("success", "failure", "pending", "downloading", "installing")}
            return {"_id": self.uuid(), "deploymentconstructor": {"name": f"rollout {i}",
                                                                  "artifactname": f"release-{i}"},
                    "created": self.ts(), "finished": self.ts() if r.random() < .7 else None, "stats": stats,
                    "status": r.choice(["finished", "inprogress", "pending"]),
                    "device_count": Int64(sum(stats.values())), "max_devices": r.randint(0, 100),
                    "device_list": [self.device_id() for _ in range(r.randint(0, 8))],
                    "type": "software", "configuration": Binary(self.blob(r.randint(0, 64)))}
        if (db, coll) == ("deployments", "devices"):
            return {"_id": self.uuid(), "deploymentid": self.uuid(), "deviceid": self.device_id(),
                    "status": r.choice(["success", "failure", "pending", "downloading"]),
                    "created": self.ts(), "finished": self.ts(), "devicetype": r.choice(DEVICE_TYPES),
                    "isLogAvailable": r.random() < .1, "attempts": r.randint(1, 3),
                    "image": {"id": self.uuid(), "size": Int64(r.randrange(10**6, 10**9))}}
        if (db, coll) == ("deployments", "images"):
            doc = {"_id": self.uuid(), "meta": {"description": f"build {i}"},
                   "meta_artifact": {"name": f"release-{i}", "device_types_compatible": r.sample(DEVICE_TYPES, 2),
                                     "info": {"format": "mender", "version": 3}, "signed": r.random() < .5,
                                     "updates": [{"type_info": {"type": "rootfs-image"},
                                                  "files": [{"name": "rootfs.ext4", "checksum": self.blob(32).hex(),
                                                             "size": Int64(r.randrange(10**7, 10**9))}]}],
                                     "provides": {("rootfs-image.version" if self.full_mongodb
                                                   else "rootfs-image_version"): f"release-{i}"},
                                     "depends": {"device_type": r.sample(DEVICE_TYPES, 2)}},
                   "size": Int64(r.randrange(10**6, 10**9)), "modified": self.ts()}
            if self.full_mongodb:
                doc["meta_artifact"]["price"] = Decimal128(f"{r.randint(0, 9999)}.{r.randint(0, 99):02d}")
            return doc
        if (db, coll) == ("deployments", "device_deployment_logs"):
            return {"_id": self.uuid(), "deploymentid": self.uuid(), "deviceid": self.device_id(),
                    "messages": [{"timestamp": self.ts(), "level": r.choice(["info", "error"]),
                                  "message": "installing update " * r.randint(1, 20)} for _ in range(r.randint(1, 10))]}
        if (db, coll) == ("useradm", "users"):
            return {"_id": self.uuid(), "email": f"user{i}@example.com",
                    "password": "$2a$10$" + self.blob(24).hex(), "created_ts": self.ts(),
                    "updated_ts": self.ts(), "login_ts": self.ts()}
        if (db, coll) == ("useradm", "tokens"):
            return {"_id": ObjectId(self.blob(12)), "sub": self.uuid(), "exp": {"time": self.ts()},
                    "name": f"pat-{i}", "last_used": self.ts()}
        if (db, coll) == ("workflows", "jobs"):
            return {"_id": ObjectId(self.blob(12)), "workflow_name": r.choice(["provision_device", "decommission_device",
                                                                               "update_device_inventory"]),
                    "input_parameters": [{"name": "device_id", "value": self.device_id()},
                                         {"name": "request_id", "value": self.uuid()}],
                    "status": r.randint(0, 3), "insert_time": self.ts(),
                    "results": [{"name": "task_1", "type": "http", "success": True,
                                 "http_response": {"status_code": 200, "body": "{}"}}]}
        if (db, coll) == ("deviceconnect", "devices"):
            return {"_id": self.device_at(i), "status": r.choice(["connected", "disconnected"]),
                    "created_ts": self.ts(), "updated_ts": self.ts()}
        if (db, coll) == ("deviceconnect", "sessions"):
            return {"_id": self.uuid(), "device_id": self.device_id(), "user_id": self.uuid(),
                    "start_ts": self.ts(), "types": ["shell"]}
        if (db, coll) == ("deviceconfig", "devices"):
            cfg = {f"key{k}": f"value{r.randrange(1000)}" for k in range(r.randint(0, 12))}
            return {"_id": self.device_at(i), "configured": cfg, "reported": dict(cfg),
                    "updated_ts": self.ts(), "report_ts": self.ts()}
        raise KeyError((db, coll))


def documents(scale: float = 1.0, seed: int = 1, full_mongodb: bool = False):
    """Yield (db, collection, [docs]) in an order that keeps device ids consistent;
    `full_mongodb` adds decimal128 values and dotted field names (as Mender writes them)."""
    gen = _Gen(seed, full_mongodb)
    for (db, coll), base in BASE_COUNTS.items():
        n = max(1, int(base * scale))
        yield db, coll, [gen.doc(db, coll, i) for i in range(n)]


# what FerretDB v1 lacks (tests/ENVIRONMENT.md): the generator leaves it out there
FERRETDB_UNSUPPORTED_INDEX_OPTIONS = {"expireAfterSeconds", "partialFilterExpression"}


def seed_mongo(client, scale: float = 1.0, seed: int = 1, full_mongodb: bool = False,
               batch: int = 1000) -> dict[tuple[str, str], int]:
    """Create the indexes and insert the documents; returns counts per namespace.
    `full_mongodb` adds what FerretDB v1 refuses (decimal128, dotted field names, TTL,
    partial, sparse and text indexes)."""
    counts = {}
    for (db, coll), specs in INDEXES.items():
        for keys, opts in specs:
            if not full_mongodb:
                opts = {k: v for k, v in opts.items() if k not in FERRETDB_UNSUPPORTED_INDEX_OPTIONS}
            client[db][coll].create_index(keys, **opts)
    for (db, coll), specs in (FULL_MONGODB_INDEXES.items() if full_mongodb else ()):
        for keys, opts in specs:
            client[db][coll].create_index(keys, **opts)
    for db, coll, docs in documents(scale, seed, full_mongodb):
        for i in range(0, len(docs), batch):
            client[db][coll].insert_many(docs[i:i + batch], ordered=False)
        counts[(db, coll)] = len(docs)
    return counts


def artifact_objects(scale: float = 1.0, seed: int = 2, count: int | None = None):
    """Yield (key, bytes): Mender artifact keys are image UUIDs; sizes are mixed,
    mostly small with a few that need a multipart upload."""
    r = random.Random(seed)
    n = count if count is not None else max(1, int(20 * scale))
    for i in range(n):
        roll = r.random()
        size = (r.randrange(1, 64 * 1024) if roll < .7 else
                r.randrange(64 * 1024, 2 * 1024 * 1024) if roll < .95 else
                r.randrange(9 * 1024 * 1024, 12 * 1024 * 1024))
        key = str(uuid.UUID(int=r.getrandbits(128), version=4))
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
