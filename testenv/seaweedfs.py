"""SeaweedFS, the S3 service Mender's docs name for the open-source chart from 6.x (chart
8.2.1's storage proxy points at `seaweedfs-s3:8333`): `weed mini`, its master, volume server,
filer and S3 gateway in one process, built by `make test-env` (testenv/build.sh). The tests
that take the `s3` fixture run against it as well as MinIO (tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .servers import MINIO_PASSWORD, MINIO_USER, MinIO, _spawn, _wait, free_port, tool


@dataclass
class SeaweedFS(MinIO):
    """The same face as MinIO (endpoint, keys, client(), env()): an S3 service."""

    def ready(self) -> bool:
        return "Buckets" in self.client().list_buckets()


def start_seaweedfs(workdir: Path) -> SeaweedFS:
    """`weed mini` on 127.0.0.1 with every port picked here (its gRPC ports would otherwise be
    its HTTP ports + 10000: in the ephemeral range), without the WebDAV gateway, the admin UI,
    the Iceberg and Lance endpoints and telemetry (it would phone home); the S3 identity comes
    from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as its docs say for `mini`."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    s3 = free_port()
    ports = {f"-{name}": str(free_port()) for name in (
        "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
        "filer.port", "filer.port.grpc")}
    cmd = [str(tool("weed")), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.port={s3}", *(f"{flag}={port}" for flag, port in ports.items()),
           "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
           "-s3.port.lance=0", "-master.volumeSizeLimitMB=64"]
    env = {"AWS_ACCESS_KEY_ID": MINIO_USER, "AWS_SECRET_ACCESS_KEY": MINIO_PASSWORD}
    server = _spawn("seaweedfs", cmd, workdir, s3, env)
    seaweed = SeaweedFS(server, f"http://127.0.0.1:{s3}")
    _wait(seaweed.ready, "seaweedfs", server.proc, server.log, timeout=90)
    return seaweed
