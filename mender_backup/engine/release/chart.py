"""What the real Mender charts (mender-helm 5.x to 8.x) do that a backup or a restore
must respect, read from their templates (see ../shared/mender-helm/SOURCE.md):

- every service reads MongoDB from the Secret `mongodb-common` (keys MONGO, MONGO_URL)
  or `global.mongodb.existingSecret`, and S3 from `artifacts-storage` (AWS_BUCKET and
  STORAGE_BUCKET; AWS_AUTH_KEY/AWS_AUTH_SECRET only with static keys) or
  `global.s3.existingSecret`, through envFrom: changing them restarts nothing;
  `deployments.mongodbExistingSecret` / `inventory.mongodbExistingSecret` override
  MongoDB for one service;
- from 6.x on, `mongodb.enabled` (an embedded MongoDB) is the default; 8.x fails the
  template when it is set together with `global.mongodb.URL`;
- from 6.x on, useradm, device-auth and tenantadm generate a new ed25519 signing key at
  every `helm upgrade` unless `<svc>.certs.key` or `<svc>.certs.existingSecret` is set;
- migrations run only in pre-upgrade hook Jobs (`dbmigration.enable`);
- the storage proxy's route (`api_gateway.storage_proxy.customRule`, 6.x+ default
  ``PathRegexp(`^/mender-artifact-storage`)``) names the bucket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...errors import UsageError
from ...kube.helm import ReleaseInfo
from .values import get_path

SUPPORTED_MAJORS = (5, 6, 7, 8)
MONGODB_SECRET = "mongodb-common"
MONGODB_KEYS = ("MONGO", "MONGO_URL")
S3_SECRET = "artifacts-storage"
BUCKET_KEYS = ("AWS_BUCKET", "STORAGE_BUCKET")
STATIC_KEY_KEYS = ("AWS_AUTH_KEY", "AWS_AUTH_SECRET")
# global.storage: azure: the keys the chart writes into the same Secret (our chart's
# azure.existingSecretKeys names them), and the values they come from
AZURE_KEYS = {"connectionString": "AZURE_AUTH_CONNECTION_STRING", "accountKey": "AZURE_AUTH_SHARED_KEY_ACCOUNT_KEY"}
CONTAINER = ("global", "azure", "CONTAINER_NAME")
CONTAINER_URI = ("global", "azure", "AUTH_SHARED_KEY_URI")
# values key of the service -> the Secret holding its signing key
SIGNING_KEYS = {"useradm": "rsa-useradm", "device_auth": "rsa-device-auth", "tenantadm": "rsa-tenantadm"}
PER_SERVICE_MONGODB = ("deployments", "inventory")
# components of the release that hold the data a restore writes: they keep running
DATA_COMPONENTS = {"mongodb", "arbiter"}

MONGODB_URL = ("global", "mongodb", "URL")
BUCKET = ("global", "s3", "AWS_BUCKET")
EMBEDDED_MONGODB = ("mongodb", "enabled")
PROXY_RULE = ("api_gateway", "storage_proxy", "customRule")


def major(info: ReleaseInfo) -> int:
    m = re.match(r"v?(\d+)\.", info.version)
    return int(m.group(1)) if m else 0


def check_supported(info: ReleaseInfo) -> None:
    if info.chart != "mender" or major(info) not in SUPPORTED_MAJORS:
        raise UsageError(f"release {info.name} runs chart {info.chart} {info.version}: only the Mender chart "
                         f"(mender-helm) 5.x to 8.x is supported")


@dataclass
class MenderValues:
    """The settings of a release that a backup and a restore depend on, from its
    computed values (`helm get values --all`)."""
    values: Mapping
    major: int

    def get(self, path: tuple[str, ...], default=None):
        v = get_path(self.values, path)
        return default if v is None else v

    @property
    def storage(self) -> str:
        return str(self.get(("global", "storage"), "aws"))

    @property
    def embedded_mongodb(self) -> bool:
        return bool(self.get(EMBEDDED_MONGODB, False))

    @property
    def mongodb_secret(self) -> str:
        return self.get(("global", "mongodb", "existingSecret")) or MONGODB_SECRET

    @property
    def s3_secret(self) -> str:
        return self.get(("global", "s3", "existingSecret")) or S3_SECRET

    @property
    def user_mongodb_secret(self) -> bool:
        return bool(self.get(("global", "mongodb", "existingSecret")))

    @property
    def user_s3_secret(self) -> bool:
        return bool(self.get(("global", "s3", "existingSecret")))

    @property
    def service_mongodb_secrets(self) -> dict[str, str]:
        """service -> its own MongoDB Secret, where one is set."""
        return {s: self.get((s, "mongodbExistingSecret")) for s in PER_SERVICE_MONGODB
                if self.get((s, "mongodbExistingSecret"))}

    @property
    def service_account(self) -> str:
        """IRSA: the service account whose role reaches S3 (no static keys then)."""
        return str(self.get(("global", "s3", "AWS_SERVICE_ACCOUNT_NAME")) or "")

    @property
    def migrations(self) -> bool:
        return bool(self.get(("dbmigration", "enable"), True))

    @property
    def proxy_rule(self) -> str | None:
        """The storage proxy's route, when the proxy is on."""
        if not self.get(("api_gateway", "storage_proxy", "enabled"), False):
            return None
        return self.get(PROXY_RULE)

    def signing_key_services(self) -> dict[str, str]:
        """service -> the Secret the chart writes its signing key to, for the services the
        release runs that take their key from values (not from a Secret of the user's)."""
        out = {}
        for svc, secret in SIGNING_KEYS.items():
            if svc == "tenantadm" and not (self.get(("global", "enterprise"), False) and self.get(("tenantadm", "enabled"), False)):
                continue
            if svc != "tenantadm" and not self.get((svc, "enabled"), True):
                continue
            if not self.get((svc, "certs", "existingSecret")):
                out[svc] = secret
        return out

    def signing_keys_to_keep(self) -> dict[str, str]:
        """service -> Secret, for each service whose key `helm upgrade` would generate anew."""
        if self.major < 6:      # 5.x takes the keys from values only (the chart refuses without)
            return {}
        return {svc: secret for svc, secret in self.signing_key_services().items()
                if not self.get((svc, "certs", "key"))}


def mongodb_url_in(keys: Mapping[str, str]) -> str:
    """The URL in a MongoDB Secret's keys (MONGODB_KEYS: MONGO_URL, else MONGO), "" without."""
    return keys.get("MONGO_URL") or keys.get("MONGO") or ""


def bucket_in(keys: Mapping[str, str], mender: MenderValues) -> str:
    """The bucket in an S3 Secret's keys (BUCKET_KEYS), else global.s3.AWS_BUCKET, "" without."""
    return keys.get("AWS_BUCKET") or keys.get("STORAGE_BUCKET") or mender.get(BUCKET) or ""


def proxy_rule_for(rule: str, old_bucket: str, new_bucket: str) -> str | None:
    """The storage proxy route after a bucket rename; None when it does not name the bucket."""
    pattern = re.compile(rf"(?<=/){re.escape(old_bucket)}(?=[`'\"/)$]|$)")
    new, n = pattern.subn(new_bucket, rule)
    return new if n else None


@dataclass
class SecretKeys:
    """The key names present in the Secrets the release's pods read (what our CronJob may
    reference: a secretKeyRef to a missing key keeps the pod from starting)."""
    mongodb: set[str] = field(default_factory=set)
    s3: set[str] = field(default_factory=set)

    def mongodb_url_key(self) -> str:
        for k in ("MONGO_URL", "MONGO"):
            if k in self.mongodb:
                return k
        raise UsageError(f"the MongoDB Secret has neither MONGO_URL nor MONGO (keys: {', '.join(sorted(self.mongodb))})")

    def bucket_key(self) -> str:
        return next((k for k in BUCKET_KEYS if k in self.s3), "")

    def static_keys(self) -> tuple[str, str]:
        return STATIC_KEY_KEYS if all(k in self.s3 for k in STATIC_KEY_KEYS) else ("", "")
