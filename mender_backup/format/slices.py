"""Oplog positions and the oplog slices of point-in-time recovery (docs/FORMAT.md,
"The oplog" and "Oplog slices").

A position (OpTime) is an oplog timestamp, `t` seconds and `i` the ordinal within
that second, with the wall-clock time of its entry. A slice is the oplog entries
with from <= ts <= to, as raw BSON, zstd-compressed, at
`oplog/<from>-<to>.bson.zst`, and its manifest `oplog/<from>-<to>.json`, written
after it: a slice without its manifest does not exist. Consecutive slices share
their boundary entry (the next slice's `from` is the previous one's `to`); that
entry still being in the oplog when the next slice is read is the proof that
nothing between them was lost. A slice whose `from` is not the previous `to` marks
a gap: the oplog rolled over between two runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from bson import Timestamp

from ..errors import IntegrityError, InvalidManifestError, UsageError
from . import schema
from .compat import readable_version

SLICE_FORMAT_VERSION = 2      # reads 1 (plain) and 2 (encrypted); writes the lowest that fits
ENCRYPTED_SLICE_VERSION = 2
_POS = r"(\d+)\.(\d+)"
_SLICE = re.compile(rf"^{_POS}-{_POS}\.(bson\.zst|json)$")


@dataclass(frozen=True, order=True)
class OpTime:
    t: int
    i: int
    time: str = field(default="", compare=False)   # ISO 8601 UTC of the entry's wall clock

    @property
    def ts(self) -> Timestamp:
        return Timestamp(self.t, self.i)

    @property
    def key(self) -> str:
        return f"{self.t}.{self.i}"

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.time) if self.time else datetime.fromtimestamp(self.t, timezone.utc)

    def as_json(self) -> dict:
        return {"t": self.t, "i": self.i, "time": self.time}

    @classmethod
    def from_json(cls, d: Any) -> "OpTime":
        if not isinstance(d, dict) or not isinstance(d.get("t"), int) or not isinstance(d.get("i"), int):
            raise ValueError(f"bad oplog position {d!r}")
        return cls(d["t"], d["i"], str(d.get("time", "")))

    def __str__(self) -> str:
        return f"{self.t}:{self.i} ({self.time or self.when.isoformat()})"


def slice_name(first: Timestamp, last: Timestamp) -> str:
    """`<from>-<to>`: the slice's objects are this plus `.bson.zst` and `.json`."""
    return f"{first.time}.{first.inc}-{last.time}.{last.inc}"


def parse_slice_name(name: str) -> tuple[tuple[int, int], tuple[int, int], str] | None:
    m = _SLICE.match(name)
    if not m:
        return None
    return (int(m[1]), int(m[2])), (int(m[3]), int(m[4])), m[5]


def slice_context(name: str) -> str:
    """What an encrypted slice is bound to (docs/FORMAT.md, "Encryption"): its own name,
    so a slice cannot be passed off as another."""
    return f"oplog:{name}"


@dataclass
class SliceManifest:
    """What one slice holds; written after the slice itself."""
    first: OpTime            # the `from` of the name: the previous slice's last entry, or a new start
    last: OpTime             # the newest entry in the slice
    count: int               # entries
    size: int                # bytes stored (compressed)
    sha256: str              # of the bytes stored
    compression: str
    created_at: str
    tool_version: str
    format_version: int = 1
    # {"algorithm", "key_fingerprint"} when the slice is encrypted (as the backups' archives)
    encryption: dict | None = None

    def to_json(self) -> bytes:
        d = asdict(self)
        d["from"], d["to"] = self.first.as_json(), self.last.as_json()
        del d["first"], d["last"]
        if d["encryption"] is None:
            del d["encryption"]
        return (json.dumps(d, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> "SliceManifest":
        try:
            d = json.loads(raw)
            if not isinstance(d, dict):
                raise InvalidManifestError(f"{where}: invalid slice manifest: (top): not a JSON object")
            version = readable_version(d, SLICE_FORMAT_VERSION, where, "slice manifest")
            schema.validate(d, schema.SLICE, where, "slice manifest")
            enc = d.get("encryption")
            if enc is not None and (version < ENCRYPTED_SLICE_VERSION or not enc.get("key_fingerprint")):
                raise ValueError(f"encryption in slice format {version}")
            return cls(OpTime.from_json(d["from"]), OpTime.from_json(d["to"]), int(d["count"]), int(d["size"]),
                       str(d["sha256"]), str(d["compression"]), str(d["created_at"]), str(d["tool_version"]),
                       version, dict(enc) if enc else None)
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise InvalidManifestError(f"{where}: corrupt slice manifest ({exc})") from None


def parse_time(text: str) -> tuple[datetime | None, Timestamp | None]:
    """`--to-time`: an ISO 8601 time (UTC unless it has an offset) or an oplog
    timestamp `<seconds>:<ordinal>` (mongorestore's --oplogLimit notation, inclusive)."""
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if m:
        return None, Timestamp(int(m[1]), int(m[2]))
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"bad time {text!r}: give an ISO 8601 time such as 2026-11-24T03:15:00Z "
                         f"or an oplog timestamp <seconds>:<ordinal>") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)), None
