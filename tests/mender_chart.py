"""The real Mender chart (../shared/mender-helm), installed the way these tests need it:
external MongoDB and S3 (our servers on 127.0.0.1), and its Secrets exactly as it makes
them (`mongodb-common`, `artifacts-storage`), which our chart's pods read.

The Mender images cannot be pulled here, so every Mender pod gets a node affinity no
node has (they stay Pending, the release is otherwise complete), the migration hook
Jobs are off (helm would wait for them) and so is the Redis subchart.
"""

from __future__ import annotations

import base64
import functools
import os
from pathlib import Path

from ruamel.yaml import YAML

from tests.helmutil import ROOT, helm_run


def shared() -> Path:
    """The project's shared folder, found as testenv/build.sh finds it."""
    env = os.environ.get("MENDER_BACKUP_SHARED")
    if env:
        return Path(env)
    beside = ROOT.parent / "shared"
    return beside if beside.is_dir() else Path("/work/shared")


MENDER_CHART = shared() / "mender-helm" / "mender-5.13.1.tgz"   # external MongoDB by default


@functools.cache
def _signing_key() -> str:
    """Mender 5.x needs the useradm/deviceauth signing keys in its values."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def mender_values(mongodb_url: str, minio, bucket: str, secret_key: str | None = None) -> dict:
    """Values of a Mender release on our MongoDB and MinIO (`secret_key`: a wrong S3 key)."""
    never = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "mender-backup.test/mender-pods", "operator": "Exists"}]}]}}}
    return {
        "global": {
            "enterprise": False,
            "mongodb": {"URL": mongodb_url},
            "s3": {"AWS_URI": minio.endpoint, "AWS_BUCKET": bucket, "AWS_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": minio.access_key,
                   "AWS_SECRET_ACCESS_KEY": secret_key or minio.secret_key},
            "url": "https://mender.example.com",
        },
        "redis": {"enabled": False},
        "dbmigration": {"enable": False},
        "default": {"affinity": never},
        "useradm": {"certs": {"key": _signing_key()}},
        "device_auth": {"certs": {"key": _signing_key()}},
    }


def write_values(values: dict, path: Path) -> Path:
    with open(path, "w") as f:
        YAML().dump(values, f)
    path.chmod(0o600)
    return path


def rendered_secrets(helm: Path, values_file: Path) -> dict[str, dict[str, str]]:
    """The Secrets `helm template` of the Mender chart makes: name -> key -> value."""
    out = helm_run(helm, "template", "mender", str(MENDER_CHART), "-f", str(values_file)).stdout
    return {d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
            for d in YAML(typ="safe").load_all(out) if d and d.get("kind") == "Secret"}
