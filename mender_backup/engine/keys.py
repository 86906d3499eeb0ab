"""The encryption keys an operator gave, read from the environment (never from the
command line: arguments are visible to every user of the machine).

    MENDER_BACKUP_ENCRYPTION_KEY        one or more base64 keys, comma- or space-separated
    MENDER_BACKUP_ENCRYPTION_KEY_FILE   a file of base64 keys, one a line (a mounted Secret)

The first key encrypts new backups; every key is tried, by fingerprint, to read
old ones: rotating is putting the new key first and keeping the old ones after it
until the last backup made with them is pruned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError
from ..format.encryption import Key, Keyring
from ..redact import register_secret

ENV_KEY = "MENDER_BACKUP_ENCRYPTION_KEY"
ENV_KEY_FILE = "MENDER_BACKUP_ENCRYPTION_KEY_FILE"


def _parse(text: str, where: str) -> list[Key]:
    words = [w for w in re.split(r"[\s,]+", text) if w and not w.startswith("#")]
    for w in words:
        register_secret(w)
    return [Key.from_base64(w, f"{where} (key {i + 1})" if len(words) > 1 else where) for i, w in enumerate(words)]


def from_env(env: Mapping[str, str]) -> Keyring:
    """The keys `env` (Settings.environ: the environment a command started with) gives."""
    value, path = env.get(ENV_KEY, "").strip(), env.get(ENV_KEY_FILE, "").strip()
    if value and path:
        raise UsageError(f"set {ENV_KEY} or {ENV_KEY_FILE}, not both")
    if path:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as exc:
            raise UsageError(f"{ENV_KEY_FILE}: cannot read {path}: {exc.strerror}") from None
        keys = _parse(text, ENV_KEY_FILE)
        if not keys:
            raise UsageError(f"{ENV_KEY_FILE}: {path} holds no key")
        return Keyring(keys)
    return Keyring(_parse(value, ENV_KEY) if value else [])


def generate() -> Key:
    """A new random key (`mender-backup key generate`)."""
    return Key.generate()


@dataclass
class Configured:
    """`mender-backup key show`: the fingerprints of the configured keys, the first encrypting."""
    fingerprints: list[str]

    def to_json(self) -> dict:
        return {"keys": self.fingerprints}

    def describe(self) -> str:
        return "\n".join(f"{fp}  {'encrypts new backups, reads' if i == 0 else 'reads'}"
                         for i, fp in enumerate(self.fingerprints)) or "no encryption key configured"


def configured(env: Mapping[str, str]) -> Configured:
    return Configured(from_env(env).fingerprints)
