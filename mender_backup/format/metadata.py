"""A collection's metadata as the archive carries it: mongodump's
`{"options", "indexes", "uuid", "collectionName", "type"}` in canonical
extended JSON (docs/FORMAT.md, "Collection metadata")."""

from __future__ import annotations

from dataclasses import dataclass, field

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from ..errors import IntegrityError

# The fields MongoDB accepts in an index specification (index_key_validate.cpp; bucketSize from
# geoHaystack, before 5.0) and in a collection's options (create): a server refuses any other,
# and then only after earlier collections went in; a field outside these in an archive is damage,
# refused before the first write.
INDEX_FIELDS = frozenset({
    "key", "name", "v", "ns", "unique", "sparse", "background", "expireAfterSeconds", "partialFilterExpression",
    "storageEngine", "collation", "weights", "default_language", "language_override", "textIndexVersion",
    "2dsphereIndexVersion", "bits", "min", "max", "bucketSize", "coarsestIndexedLevel", "finestIndexedLevel",
    "wildcardProjection", "hidden", "dropDups", "clustered", "prepareUnique", "columnstoreProjection",
    "columnstoreCompressor", "originalSpec"})
COLLECTION_OPTIONS = frozenset({
    "capped", "size", "max", "autoIndexId", "flags", "temp", "validator", "validationLevel", "validationAction",
    "collation", "storageEngine", "indexOptionDefaults", "viewOn", "pipeline", "timeseries", "expireAfterSeconds",
    "clusteredIndex", "changeStreamPreAndPostImages", "recordPreImages", "encryptedFields", "idIndex", "uuid"})


@dataclass
class CollectionSpec:
    db: str
    name: str
    type: str = "collection"            # collection | view | timeseries
    options: dict = field(default_factory=dict)
    indexes: list[dict] = field(default_factory=list)
    uuid: str | None = None

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.name}"

    def to_json(self) -> str:
        meta: dict = {"options": self.options, "indexes": self.indexes}
        if self.uuid:
            meta["uuid"] = self.uuid
        meta["collectionName"] = self.name
        meta["type"] = self.type
        return json_util.dumps(meta, json_options=CANONICAL_JSON_OPTIONS)

    @classmethod
    def from_json(cls, db: str, name: str, metadata: str, type_: str = "collection") -> "CollectionSpec":
        """Parse what an archive says; malformed metadata is an integrity error naming the namespace."""
        if not metadata:
            return cls(db, name, type_ or "collection")
        try:
            meta = json_util.loads(metadata)
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            spec = cls(db, name, meta.get("type") or type_ or "collection", dict(meta.get("options") or {}),
                       list(meta.get("indexes") or []), meta.get("uuid"))
            _check_fields(spec)
            return spec
        except Exception as exc:
            raise IntegrityError(f"malformed metadata for {db}.{name} in the archive: {exc}") from None


def _check_fields(spec: CollectionSpec) -> None:
    if unknown := sorted(set(spec.options) - COLLECTION_OPTIONS):
        raise ValueError(f"unknown collection option {unknown[0]!r}")
    for i in spec.indexes:
        if not isinstance(i, dict) or not isinstance(i.get("name"), str) or not isinstance(i.get("key"), dict) \
                or not i["key"]:
            raise ValueError("an index without a name or a key")
        if unknown := sorted(set(i) - INDEX_FIELDS):
            raise ValueError(f"index {i['name']!r} has the unknown field {unknown[0]!r}")
