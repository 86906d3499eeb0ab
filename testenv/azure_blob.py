"""Azurite, Microsoft's Azure Storage emulator (its Blob service only), as the tests' Azure.

An account of its own with a random key (AZURITE_ACCOUNTS), so a test can look for the key
in what the tool prints; the Blob service at http://127.0.0.1:PORT/ACCOUNT (path-style, as
Azurite serves it); data on disk, so `restart()` after `kill()` finds it again.
"""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from .servers import Server, _Restartable, _spawn, _wait, free_port, tool

ACCOUNT = "mbtestaccount"


@dataclass
class Azurite(_Restartable):
    server: Server
    endpoint: str              # the Blob service URL of the account
    account: str = ACCOUNT
    key: str = field(default="", repr=False)

    def service(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient(self.endpoint, credential={"account_name": self.account, "account_key": self.key},
                                 retry_total=1)

    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
                f"BlobEndpoint={self.endpoint};")

    def env(self, prefix: str = "") -> dict[str, str]:
        """The environment our tool reads Azure settings from (prefix MENDER_BACKUP_DEST_: a destination's)."""
        return {f"{prefix}AZURE_STORAGE_KEY": self.key, f"{prefix}AZURE_STORAGE_BLOB_ENDPOINT": self.endpoint}

    def url(self, container: str, prefix: str = "") -> str:
        return f"azure://{self.account}/{container}" + (f"/{prefix}" if prefix else "")

    def create_container(self, name: str) -> str:
        self.service().create_container(name)
        return name

    def seed(self, container: str, count: int, seed: int = 2) -> dict[str, int]:
        """Mender-like artifacts (testenv/mender_data.py's) in `container`, made if needed; key -> size."""
        from . import mender_data
        c = self.service().get_container_client(container)
        if not c.exists():
            c.create_container()
        sizes = {}
        for key, data in mender_data.artifact_objects(1.0, seed, count):
            c.upload_blob(key, data, overwrite=True)
            sizes[key] = len(data)
        return sizes

    def copy(self, container: str, name: str, to: str) -> None:
        c = self.service().get_container_client(container)
        c.upload_blob(to, c.download_blob(name).readall(), overwrite=True)

    def read(self, container: str, name: str) -> bytes:
        return self.service().get_container_client(container).download_blob(name).readall()

    def blobs(self, container: str, prefix: str = "") -> dict[str, int]:
        """name -> size of the committed blobs (what a reader can see)."""
        c = self.service().get_container_client(container)
        return {b.name: b.size for b in c.list_blobs(name_starts_with=prefix or None)}

    def ready(self) -> bool:
        host, port = self.endpoint.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port)), timeout=2):
            pass
        self.service().get_service_properties()
        return True


# start.sh's artifact store: S3 (MinIO). Its copy for Azure names the deployments service's own
# Azure settings instead (deployments/config/config.go: azure.auth.shared_key.*; the URI is the
# container's URL, as storage/azblob/options.go takes it).
S3_SETTINGS = """DEPLOYMENTS_STORAGE_DEFAULT=aws DEPLOYMENTS_STORAGE_BUCKET=$S3_BUCKET \\
DEPLOYMENTS_AWS_URI=$S3_URL DEPLOYMENTS_AWS_EXTERNAL_URI=$S3_URL DEPLOYMENTS_AWS_REGION=$S3_REGION \\
DEPLOYMENTS_AWS_AUTH_KEY=$S3_ACCESS_KEY DEPLOYMENTS_AWS_AUTH_SECRET=$S3_SECRET_KEY \\
DEPLOYMENTS_AWS_FORCE_PATH_STYLE=true \\
"""
AZURE_SETTINGS = """DEPLOYMENTS_STORAGE_DEFAULT=azure DEPLOYMENTS_STORAGE_BUCKET=$S3_BUCKET \\
DEPLOYMENTS_AZURE_AUTH_SHARED_KEY_ACCOUNT_NAME=$AZURE_ACCOUNT \\
DEPLOYMENTS_AZURE_AUTH_SHARED_KEY_ACCOUNT_KEY=$AZURE_KEY \\
DEPLOYMENTS_AZURE_AUTH_SHARED_KEY_URI=$AZURE_CONTAINER_URL \\
"""


def mender_on_azure(start_script: Path, dest: Path, azurite: Azurite, container: str) -> tuple[Path, dict[str, str]]:
    """A copy of the shared start.sh whose deployments service keeps artifacts in `container`
    at Azurite, and the environment it needs (-> servers.start_mender's script, storage_env).
    The shared script itself knows only S3; its S3 lines must be there as they were."""
    text = start_script.read_text()
    if S3_SETTINGS not in text:
        raise RuntimeError(f"{start_script} no longer sets deployments' S3 as testenv/azure_blob.py expects: "
                           "update S3_SETTINGS there")
    dest.write_text(text.replace(S3_SETTINGS, AZURE_SETTINGS))
    dest.chmod(0o755)
    # start.sh requires the S3 variables: values that reach nothing
    return dest, {"AZURE_ACCOUNT": azurite.account, "AZURE_KEY": azurite.key,
                  "AZURE_CONTAINER_URL": f"{azurite.endpoint}/{container}",
                  "S3_URL": "http://127.0.0.1:9", "S3_ACCESS_KEY": "unused", "S3_SECRET_KEY": "unused"}


def start_azurite(workdir: Path, port: int | None = None) -> Azurite:
    port = port or free_port()
    key = base64.b64encode(os.urandom(32)).decode()
    cmd = [str(tool("azurite-blob")), "--blobHost", "127.0.0.1", "--blobPort", str(port),
           "--location", str(workdir / "data"), "--disableTelemetry",
           # the SDK is newer than the emulator: its x-ms-version would be refused
           "--skipApiVersionCheck", "--loose"]
    server = _spawn("azurite", cmd, workdir, port, {"AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"})
    azurite = Azurite(server, f"http://127.0.0.1:{port}/{ACCOUNT}", ACCOUNT, key)
    _wait(azurite.ready, "azurite", server.proc, server.log)
    return azurite
