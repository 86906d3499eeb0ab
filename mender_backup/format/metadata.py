"""A collection's metadata as the archive carries it: mongodump's
`{"options", "indexes", "uuid", "collectionName", "type"}` in canonical
extended JSON (docs/FORMAT.md, "Collection metadata")."""

from __future__ import annotations

from dataclasses import dataclass, field

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from ..errors import IntegrityError


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
            return cls(db, name, meta.get("type") or type_ or "collection", dict(meta.get("options") or {}),
                       list(meta.get("indexes") or []), meta.get("uuid"))
        except Exception as exc:
            raise IntegrityError(f"malformed metadata for {db}.{name} in the archive: {exc}") from None
