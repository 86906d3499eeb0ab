"""The Mender secrets bundle: the Kubernetes Secrets holding Mender's keys, as one JSON
document (docs/FORMAT.md, "Mender's secrets"). It is only ever stored encrypted."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from ..errors import IntegrityError, UsageError

KIND = "mender-backup/secrets"
VERSION = 1
FILE = "mender-secrets.json.enc"


@dataclass
class BundledSecret:
    name: str
    type: str
    data: dict[str, str]                  # key -> base64 of the value, as the Kubernetes API returns it
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Bundle:
    namespace: str
    captured_at: str
    secrets: list[BundledSecret] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"kind": KIND, "version": VERSION, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> "Bundle":
        try:
            d = json.loads(raw)
            if d.get("kind") != KIND or d.get("version") != VERSION:
                raise IntegrityError(f"{where}: not a secrets bundle of version {VERSION}")
            return cls(d["namespace"], d["captured_at"],
                       [BundledSecret(s["name"], s["type"], dict(s["data"]), dict(s.get("labels") or {}),
                                      dict(s.get("annotations") or {})) for s in d["secrets"]],
                       list(d.get("absent") or []))
        except IntegrityError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"{where}: corrupt secrets bundle ({type(exc).__name__})") from None


def parse_names(spec: str) -> tuple[list[str], list[str]]:
    """'rsa-useradm,rsa-device-auth,rsa-tenantadm?' -> (required, optional). `default`
    stands for DEFAULT_NAMES."""
    required, optional = [], []
    for word in spec.replace(",", " ").split():
        if word == "default":
            r, o = parse_names(DEFAULT_NAMES)
            required += r
            optional += o
        elif word.endswith("?"):
            optional.append(word[:-1])
        else:
            required.append(word)
    for name in required + optional:
        if not _NAME.match(name) or len(name) > 253:
            raise UsageError(f"bad Secret name {name!r} in the Mender secrets list")
    seen: set[str] = set()
    return ([n for n in required if not (n in seen or seen.add(n))],
            [n for n in optional if not (n in seen or seen.add(n))])


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

# The Secrets the real Mender charts (5.x to 8.x) create that hold keys a restored Mender
# cannot work without (docs/FORMAT.md lists where each comes from). `?`: not always present.
DEFAULT_NAMES = "rsa-useradm,rsa-device-auth,rsa-tenantadm?,api-gateway?"
