"""`make demo`: a local Mender-like installation and the backup job against it."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests import mender_data, servers


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="mender-backup-demo-"))
    print(f"demo workspace: {work}")
    mongo = servers.start_ferretdb(work / "ferretdb")
    minio = servers.start_minio(work / "minio")
    try:
        client = mongo.client()
        counts = mender_data.seed_mongo(client, scale=1.0)
        s3 = minio.client()
        sizes = mender_data.seed_bucket(s3, "mender-artifacts", scale=1.0)
        dbs = sorted({db for db, _ in counts})
        print(f"connected to MongoDB at {mongo.url}: {len(dbs)} databases ({', '.join(dbs)}), "
              f"{sum(counts.values())} documents")
        print(f"connected to S3 at {minio.endpoint}: {len(sizes)} artifacts, {sum(sizes.values())} bytes")
        return 0
    finally:
        mongo.stop()
        minio.stop()
        servers.remove_tree(work)


if __name__ == "__main__":
    sys.exit(main())
