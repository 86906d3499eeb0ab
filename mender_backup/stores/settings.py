"""Where and as whom to reach an S3 service, read from the environment a command started with
(engine/settings.py hands it in; nothing here reads os.environ).

The standard AWS variables configure the source (the Mender artifact bucket);
MENDER_BACKUP_DEST_AWS_* override them for a destination on another service.
Empty fields fall back to the standard AWS chain (config files, IRSA, instance
roles), so a pod with a web identity needs no keys at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import UsageError
from ..redact import register_secret

DEST_PREFIX = "MENDER_BACKUP_DEST_"
DEFAULT_PART_SIZE = 16 << 20
MIN_PART_SIZE = 5 << 20


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"
    # multipart part size: 16 MiB x 10,000 parts = 156 GiB per object; S3's minimum is 5 MiB
    part_size: int = DEFAULT_PART_SIZE

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str = "", fallback: "S3Settings | None" = None) -> "S3Settings":
        def get(name: str) -> str | None:
            return env.get(prefix + name) or None
        base = fallback or cls()
        endpoint = get("AWS_ENDPOINT_URL") or base.endpoint_url
        style = (env.get("MENDER_BACKUP_S3_ADDRESSING_STYLE")
                 or ("path" if endpoint else base.addressing_style))
        settings = cls(
            endpoint_url=endpoint,
            region=get("AWS_REGION") or get("AWS_DEFAULT_REGION") or base.region,
            access_key=get("AWS_ACCESS_KEY_ID") or base.access_key,
            secret_key=get("AWS_SECRET_ACCESS_KEY") or base.secret_key,
            session_token=get("AWS_SESSION_TOKEN") or base.session_token,
            addressing_style=style,
            part_size=_part_size(env.get("MENDER_BACKUP_S3_PART_SIZE")),
        )
        register_secret(settings.secret_key)
        register_secret(settings.session_token)
        return settings

    def same_service(self, other: "S3Settings") -> bool:
        """Whether one set of credentials can server-side copy between the two."""
        return (self.endpoint_url, self.access_key, self.secret_key) == (
            other.endpoint_url, other.access_key, other.secret_key)

    def client(self):
        import boto3
        from botocore.config import Config

        cfg = Config(
            s3={"addressing_style": self.addressing_style},
            retries={"max_attempts": 8, "mode": "adaptive"},
            connect_timeout=10, read_timeout=120,
            max_pool_connections=32,
            # MinIO and most S3 services accept these; avoid newer default checksums some don't
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        return session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region or "us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token, config=cfg)


def _part_size(raw: str | None) -> int:
    if not raw:
        return DEFAULT_PART_SIZE
    try:
        return max(MIN_PART_SIZE, int(raw))
    except ValueError:
        raise UsageError(f"MENDER_BACKUP_S3_PART_SIZE must be a number of bytes, not {raw!r}") from None
