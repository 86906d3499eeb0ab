"""manifest.json: what a backup holds. Written last; a backup without it is incomplete.

Restore and verify trust nothing that is not in here: the archive's sha256 and
size, each collection's count and content digest, and the artifact inventory.
Its JSON Schema is schemas/manifest.schema.json (format/schema.py): from_json
validates a manifest against it before any field is trusted. docs/FORMAT.md has the
compatibility rule readers follow: a manifest of a newer format_version is refused,
unknown fields are ignored.
A writer writes the lowest format_version that describes its backup: 1 for a
plain one, 2 once anything in it is encrypted, 3 once its archive holds an oplog to
replay, 4 once an artifact came from a tenant's own store (an older reader would misread,
under-restore or misplace each).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import IntegrityError, InvalidManifestError
from . import schema
from .compat import known, readable_version
from .slices import OpTime

FORMAT_VERSION = 4          # the newest this reader reads
PLAIN_FORMAT_VERSION = 1    # a backup without encryption or oplog: every reader reads it
ENCRYPTED_FORMAT_VERSION = 2  # anything encrypted: an older reader would misread it
# A backup whose archive holds an oplog to replay is format 3: an older reader would
# restore its documents without the replay, i.e. not the state the backup promises.
OPLOG_FORMAT_VERSION = 3
# A backup holding artifacts of a tenant's own store (engine/tenant_storage.py) is format 4:
# an older reader would put them into the release's bucket, where Mender never looks for them.
TENANT_STORES_FORMAT_VERSION = 4


@dataclass
class CollectionEntry:
    count: int
    digest: str
    size: int
    type: str = "collection"


@dataclass
class ArchiveEntry:
    key: str             # relative to the backup's folder
    size: int
    sha256: str
    compression: str


@dataclass
class ArtifactEntry:
    key: str
    size: int
    etag: str = ""
    tenant_store: str = ""   # format 4: the tenant whose own store held it (Manifest.tenant_stores); "": the release's


@dataclass
class EncryptionEntry:
    algorithm: str           # format/encryption.py ALGORITHM
    key_fingerprint: str     # which key the encrypted objects need (never the key)


@dataclass
class SecretsEntry:
    """Mender's key Secrets, read from the Kubernetes API: an encrypted bundle."""
    key: str                 # relative to the backup's folder
    size: int
    sha256: str
    namespace: str
    secrets: list[str] = field(default_factory=list)   # the Secrets the bundle holds
    absent: list[str] = field(default_factory=list)    # optional names that did not exist


@dataclass
class OplogEntry:
    """The archive's oplog namespace (database "", collection "oplog")."""
    count: int
    digest: str
    size: int


@dataclass
class PointInTime:
    """Whether the backup is one consistent state, and which: the source's state at
    `end`, reached by replaying the archive's oplog (entries start <= ts <= end)."""
    consistent: bool
    reason: str = ""                     # why not, when not
    start: OpTime | None = None          # the newest oplog entry before the dump
    end: OpTime | None = None            # the consistency point: the newest entry after it
    oplog: OplogEntry | None = None
    databases: list[str] | None = None   # a backup of some databases (--db): only their entries

    @classmethod
    def from_dict(cls, d: dict) -> "PointInTime":
        return cls(bool(d["consistent"]), str(d.get("reason", "")),
                   OpTime.from_json(d["start"]) if d.get("start") else None,
                   OpTime.from_json(d["end"]) if d.get("end") else None,
                   known(OplogEntry, d["oplog"]) if d.get("oplog") else None,
                   list(d["databases"]) if d.get("databases") else None)


@dataclass
class Manifest:
    id: str
    created_at: str                      # ISO 8601 UTC, when the backup started
    finished_at: str
    tool_version: str
    server_version: str
    archive: ArchiveEntry
    databases: dict[str, dict[str, CollectionEntry]] = field(default_factory=dict)
    artifacts_bucket: str | None = None  # the source bucket (for information)
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    # the Mender that wrote the data: {"migrations": {db: "1.3.2"}, "chart", "chart_version", "app_version"}
    mender: dict[str, Any] = field(default_factory=dict)
    point_in_time: PointInTime | None = None   # None: written before consistency was recorded
    format_version: int = PLAIN_FORMAT_VERSION
    encryption: EncryptionEntry | None = None          # format 2: the archive (and bundle) encrypted
    mender_secrets: SecretsEntry | None = None         # format 2: always encrypted
    # format 4: tenant -> where its own store was ({type, bucket, uri, region}: never credentials)
    tenant_stores: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def document_count(self) -> int:
        return sum(c.count for colls in self.databases.values() for c in colls.values())

    def artifacts_of(self, tenant_store: str = "") -> list[ArtifactEntry]:
        """The artifacts of one store: a tenant's own (tenant_stores), or "" the release's bucket."""
        return [a for a in self.artifacts if a.tenant_store == tenant_store]

    @property
    def artifact_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)

    def to_json(self) -> bytes:
        d = asdict(self)
        for name in ("encryption", "mender_secrets"):     # format 2 fields: absent from a plain backup
            if d[name] is None:
                del d[name]
        if not self.tenant_stores:                        # format 4's: absent unless a tenant has a store
            del d["tenant_stores"]
        for a in d["artifacts"]:
            if not a["tenant_store"]:
                del a["tenant_store"]
        if self.point_in_time is None:
            del d["point_in_time"]
        else:
            for k in ("start", "end"):
                v = getattr(self.point_in_time, k)
                d["point_in_time"][k] = v.as_json() if v else None
        return (json.dumps(d, indent=2, sort_keys=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> "Manifest":
        try:
            d: dict[str, Any] = json.loads(raw)
            if not isinstance(d, dict):
                raise InvalidManifestError(f"{where}: invalid manifest: (top): not a JSON object")
            # a newer format is reported as such, not as a manifest this reader finds invalid
            version = readable_version(d, FORMAT_VERSION, where, "manifest")
            if version < 2 and (d.get("encryption") or d.get("mender_secrets")):
                raise IntegrityError(f"{where}: corrupt manifest (encrypted parts in format_version {version})")
            if version < TENANT_STORES_FORMAT_VERSION and d.get("tenant_stores"):
                raise IntegrityError(f"{where}: corrupt manifest (tenant stores in format_version {version})")
            schema.validate(d, schema.MANIFEST, where, "manifest")
            m = cls(
                id=d["id"], created_at=d["created_at"], finished_at=d["finished_at"],
                tool_version=d["tool_version"], server_version=d["server_version"],
                archive=known(ArchiveEntry, d["archive"]),
                databases={db: {c: known(CollectionEntry, e) for c, e in colls.items()}
                           for db, colls in d["databases"].items()},
                artifacts_bucket=d.get("artifacts_bucket"),
                artifacts=[known(ArtifactEntry, a) for a in d.get("artifacts", [])],
                mender=dict(d.get("mender") or {}),
                point_in_time=PointInTime.from_dict(d["point_in_time"]) if d.get("point_in_time") else None,
                format_version=version,
                encryption=known(EncryptionEntry, d["encryption"]) if d.get("encryption") else None,
                mender_secrets=known(SecretsEntry, d["mender_secrets"]) if d.get("mender_secrets") else None,
                tenant_stores={t: dict(v) for t, v in (d.get("tenant_stores") or {}).items()},
            )
            strays = [a.key for a in m.artifacts if a.tenant_store and a.tenant_store not in m.tenant_stores]
            if strays:
                raise InvalidManifestError(f"{where}: invalid manifest: artifact {strays[0]} names a tenant store "
                                           f"the manifest does not list")
            return m
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise InvalidManifestError(f"{where}: corrupt manifest ({type(exc).__name__}: {exc})") from None
