"""Where and as whom to reach an S3 service or Azure Blob Storage, read from the environment a command started with
(engine/settings.py hands it in; nothing here reads os.environ).

The standard AWS (and Azure) variables configure the source (the Mender artifact store);
MENDER_BACKUP_DEST_AWS_* (MENDER_BACKUP_DEST_AZURE_*) override them for a destination on another service.
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


@dataclass(frozen=True)
class AzureSettings:
    """As whom to reach Azure Blob Storage; the account and container come from the URL
    (`azure://account/container/prefix`). The standard Azure variables configure the source
    (Mender's artifact container), MENDER_BACKUP_DEST_AZURE_* override them for a destination.
    No connection string, key or SAS token: DefaultAzureCredential (managed identity, workload
    identity, the Azure CLI's login), so a pod with a workload identity needs no secret."""
    connection_string: str | None = field(default=None, repr=False)   # AZURE_STORAGE_CONNECTION_STRING
    account_key: str | None = field(default=None, repr=False)         # AZURE_STORAGE_KEY
    sas_token: str | None = field(default=None, repr=False)           # AZURE_STORAGE_SAS_TOKEN
    # the Blob service URL, when not https://<account>.blob.core.windows.net (Azurite, a
    # sovereign cloud, a private endpoint): AZURE_STORAGE_BLOB_ENDPOINT
    blob_endpoint: str | None = None
    block_size: int = DEFAULT_PART_SIZE     # 16 MiB x 50,000 blocks = 781 GiB per blob

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str = "",
                 fallback: "AzureSettings | None" = None) -> "AzureSettings":
        def get(name: str) -> str | None:
            return env.get(prefix + name) or None
        base = fallback or cls()
        own = [get(n) for n in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN")]
        if any(own):
            # credentials of its own: none of the source's (its connection string would win over
            # a key for another account)
            base = cls(blob_endpoint=base.blob_endpoint)
        settings = cls(
            connection_string=own[0] or base.connection_string,
            account_key=own[1] or base.account_key,
            sas_token=own[2] or base.sas_token,
            blob_endpoint=(get("AZURE_STORAGE_BLOB_ENDPOINT") or base.blob_endpoint or "").rstrip("/") or None,
            block_size=_part_size(env.get("MENDER_BACKUP_S3_PART_SIZE")),
        )
        register_connection_string(settings.connection_string)
        for secret in (settings.account_key, settings.sas_token):
            register_secret(secret)
        return settings

    @property
    def shared_key(self) -> bool:
        """Authorised by the account's key: it can copy blobs within the account server-side."""
        return bool(self.account_key) or "accountkey=" in (self.connection_string or "").lower()


def connection_string_fields(connection_string: str) -> list[tuple[str, str]]:
    """An Azure connection string's name=value pairs, in order, names lower-cased."""
    return [(name.strip().lower(), value.strip())
            for name, _, value in (part.partition("=") for part in connection_string.split(";"))]


def register_connection_string(connection_string: str | None) -> None:
    """The whole string and its secret parts (an SDK's message may quote one alone)."""
    register_secret(connection_string)
    for name, value in connection_string_fields(connection_string or ""):
        if name in ("accountkey", "sharedaccesssignature"):
            register_secret(value)


def account_in(connection_string: str) -> str:
    """An Azure connection string's AccountName ("" when it names none)."""
    return next((value for name, value in connection_string_fields(connection_string) if name == "accountname"), "")


@dataclass(frozen=True)
class StoreAccess:
    """How to reach each kind of store a URL may name: S3 or Azure Blob."""
    s3: S3Settings = S3Settings()
    azure: AzureSettings = AzureSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str = "", fallback: "StoreAccess | None" = None) -> "StoreAccess":
        return cls(s3=S3Settings.from_env(env, prefix, fallback and fallback.s3),
                   azure=AzureSettings.from_env(env, prefix, fallback and fallback.azure))
