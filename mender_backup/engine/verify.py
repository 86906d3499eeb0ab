"""`mender-backup verify`: prove a backup is intact, without touching any database.

Plain: the archive's sha256 and size match the manifest and every artifact the
manifest lists is present with its size. --deep: also decompress and parse the
whole archive (structure, each collection's metadata as a restore parses it,
per-namespace CRCs), recompute every collection's count and digest, and check that
it holds exactly the collections the manifest lists.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..errors import IntegrityError
from ..format.encryption import Keyring
from ..format.layout import ARTIFACTS
from ..output import Reporter
from ..stores import Store
from . import artifacts, catalog, integrity, mender_secrets


@dataclass
class VerifyResult:
    """A backup found intact: what was checked (--deep: the contents too) and what it holds."""
    id: str
    artifacts: int
    deep: bool
    encryption: dict | None
    mender_secrets: list[str] | None = None
    documents: int | None = None        # --deep only
    collections: int | None = None      # --deep only
    metrics_pushed: bool | None = None  # set by the caller once the run's metrics are out

    def to_json(self) -> dict:
        out = {"id": self.id, "archive_sha256": "ok", "artifacts": self.artifacts, "deep": self.deep,
               "encryption": self.encryption}
        if self.mender_secrets is not None:
            out["mender_secrets"] = self.mender_secrets
        if self.deep:
            out["documents"], out["collections"] = self.documents, self.collections
        return {**out, "metrics_pushed": self.metrics_pushed}

    def describe(self) -> str:
        enc = self.encryption
        return (f"backup {self.id} is intact"
                + (f": {self.documents} documents in {self.collections} collections re-read"
                   if self.deep else " (checksums; --deep re-reads the contents)")
                + (f"\nencrypted with key {enc['key_fingerprint']} ({enc['algorithm']}); every segment "
                   f"authenticated" if enc else "")
                + (f"\nMender secrets: {', '.join(self.mender_secrets)}" if self.mender_secrets else ""))


def run(store: Store, backup_id: str, deep: bool, reporter: Reporter, keyring: Keyring) -> VerifyResult:
    manifest = catalog.resolve(store, backup_id)
    integrity.check_sha256(store, manifest, reporter, keyring)   # an encrypted one: key first, then all of it
    present = artifacts.inventory(store, ARTIFACTS)
    missing = artifacts.check_complete(manifest.artifacts, present)
    if missing:
        raise IntegrityError(f"backup {manifest.id}: {len(missing)} artifact(s) missing or of the wrong size "
                             f"in the artifact store (e.g. {missing[0]})")
    result = VerifyResult(manifest.id, len(manifest.artifacts), deep,
                          ({"algorithm": manifest.encryption.algorithm,
                            "key_fingerprint": manifest.encryption.key_fingerprint}
                           if manifest.encryption else None))
    if manifest.mender_secrets:
        bundle = mender_secrets.load(store, manifest, keyring)
        result.mender_secrets = sorted(s.name for s in bundle.secrets)
    if deep:
        with contextlib.closing(integrity.open_archive(store, manifest, keyring)) as f:
            contents = integrity.scan_archive(f, reporter, f"reading archive of {manifest.id}")
        integrity.check_plan(manifest, contents)    # exactly what the manifest lists, counts and digests
        result.documents = sum(d.count for d in contents.digests.values())
        result.collections = len(contents.digests)
    return result
