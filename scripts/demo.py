"""`make demo`: a local Mender-like installation and the main job against it.

Seeds MongoDB (DocumentDB: MongoDB's index and type semantics) and an artifact bucket (MinIO), runs `mender-backup backup`,
wipes both, restores with `mender-backup restore`, verifies, and prints a summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testenv import mender_data, servers

EXE = Path(sys.executable).parent / "mender-backup"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def mender_backup(*args: str, env: dict[str, str]) -> dict:
    r = subprocess.run([str(EXE), *args, "--json"], env=env, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        ev = json.loads(line)
        if ev["event"] in ("info", "warning"):
            print(f"   {ev['msg']}")
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"mender-backup {args[0]} failed with exit code {r.returncode}")
    return next(json.loads(line)["result"] for line in r.stdout.splitlines() if '"event": "result"' in line)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="mender-backup-demo-"))
    step(f"starting MongoDB (DocumentDB) and S3 (MinIO) in {work}")
    mongo = servers.start_documentdb(work / "documentdb")
    minio = servers.start_minio(work / "minio")
    try:
        client, s3 = mongo.client(), minio.client()
        counts = mender_data.seed_mongo(client, scale=2.0, full_mongodb=True)
        sizes = mender_data.seed_bucket(s3, "mender-artifacts", scale=2.0)
        s3.create_bucket(Bucket="mender-backups")
        print(f"   seeded {len({db for db, _ in counts})} Mender databases, {sum(counts.values())} documents, "
              f"{len(sizes)} artifacts ({sum(sizes.values()) // 1024} KiB)")
        env = {**os.environ, **minio.env(), "MONGODB_URL": mongo.url,
               "MENDER_BACKUP_DESTINATION": "s3://mender-backups/demo",
               "MENDER_BACKUP_ARTIFACTS_BUCKET": "mender-artifacts"}

        step("mender-backup backup")
        t0 = time.monotonic()
        b = mender_backup("backup", env=env)
        t_backup = time.monotonic() - t0

        step("wiping MongoDB and the artifact bucket")
        for db in {db for db, _ in counts}:
            client.drop_database(db)
        for key in sizes:
            s3.delete_object(Bucket="mender-artifacts", Key=key)

        step(f"mender-backup restore {b['id']}")
        t0 = time.monotonic()
        mender_backup("restore", b["id"], env=env)
        t_restore = time.monotonic() - t0

        step("mender-backup verify --deep")
        mender_backup("verify", b["id"], "--deep", env=env)

        restored = sum(client[db][c].count_documents({}) for db, c in counts)
        objects = s3.list_objects_v2(Bucket="mender-artifacts").get("KeyCount", 0)
        step("summary")
        print(f"   backup {b['id']}: {b['documents']} documents in {len(b['databases'])} databases, "
              f"archive {b['archive_size'] // 1024} KiB (zstd), {b['artifacts']} artifacts, {t_backup:.1f}s")
        print(f"   restored and verified: {restored} documents, {objects} artifacts, {t_restore:.1f}s")
        ok = restored == sum(counts.values()) and objects == len(sizes)
        print("   OK" if ok else "   MISMATCH")
        return 0 if ok else 1
    finally:
        mongo.stop()
        minio.stop()
        servers.remove_tree(work)


if __name__ == "__main__":
    sys.exit(main())
