"""manifest.json: what a backup holds. Written last; a backup without it is incomplete.

Restore and verify trust nothing that is not in here: the archive's sha256 and
size, each collection's count and content digest, and the artifact inventory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import IntegrityError

FORMAT_VERSION = 1


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
    format_version: int = FORMAT_VERSION

    @property
    def document_count(self) -> int:
        return sum(c.count for colls in self.databases.values() for c in colls.values())

    @property
    def artifact_bytes(self) -> int:
        return sum(a.size for a in self.artifacts)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> "Manifest":
        try:
            d: dict[str, Any] = json.loads(raw)
            if d.get("format_version") != FORMAT_VERSION:
                raise IntegrityError(f"{where}: unsupported manifest format {d.get('format_version')!r}")
            return cls(
                id=d["id"], created_at=d["created_at"], finished_at=d["finished_at"],
                tool_version=d["tool_version"], server_version=d["server_version"],
                archive=ArchiveEntry(**d["archive"]),
                databases={db: {c: CollectionEntry(**e) for c, e in colls.items()}
                           for db, colls in d["databases"].items()},
                artifacts_bucket=d.get("artifacts_bucket"),
                artifacts=[ArtifactEntry(**a) for a in d.get("artifacts", [])],
            )
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where}: corrupt manifest ({type(exc).__name__}: {exc})") from None
