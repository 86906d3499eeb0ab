"""`mender-backup verify`: prove a backup is intact, without touching any database.

Plain: the archive's sha256 and size match the manifest and every artifact the
manifest lists is present with its size. --deep: also decompress and parse the
whole archive (structure, per-namespace CRCs), recompute every collection's
count and digest, and check that it holds exactly the collections the manifest lists.
"""

from __future__ import annotations

import contextlib

from ..errors import IntegrityError
from ..format.encryption import Keyring
from ..format.layout import ARTIFACTS
from ..output import Reporter
from ..stores import Store
from . import artifacts, catalog, integrity, mender_secrets


def run(store: Store, backup_id: str, deep: bool, reporter: Reporter, keyring: Keyring | None = None) -> dict:
    if keyring is None:
        from .keys import from_env
        keyring = from_env()
    manifest = catalog.resolve(store, backup_id)
    integrity.check_sha256(store, manifest, reporter, keyring)   # an encrypted one: key first, then all of it
    present = artifacts.inventory(store, ARTIFACTS)
    missing = artifacts.check_complete(manifest.artifacts, present)
    if missing:
        raise IntegrityError(f"backup {manifest.id}: {len(missing)} artifact(s) missing or of the wrong size "
                             f"in the artifact store (e.g. {missing[0]})")
    result = {"id": manifest.id, "archive_sha256": "ok", "artifacts": len(manifest.artifacts), "deep": deep,
              "encryption": ({"algorithm": manifest.encryption.algorithm,
                              "key_fingerprint": manifest.encryption.key_fingerprint}
                             if manifest.encryption else None)}
    if manifest.mender_secrets:
        bundle = mender_secrets.load(store, manifest, keyring)
        result["mender_secrets"] = sorted(s.name for s in bundle.secrets)
    if deep:
        with contextlib.closing(integrity.open_archive(store, manifest, keyring)) as f:
            contents = integrity.scan_archive(f, reporter, f"reading archive of {manifest.id}")
        integrity.check_plan(manifest, contents)    # exactly what the manifest lists, counts and digests
        result["documents"] = sum(d.count for d in contents.digests.values())
        result["collections"] = len(contents.digests)
    return result
