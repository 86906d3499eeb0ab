"""Where a Mender release on Azure Blob Storage (global.storage: azure) keeps its artifacts.

Mender's deployments service takes, with a shared key, AUTH_SHARED_KEY_URI as the URL of
the *container* (it ignores CONTAINER_NAME then; default https://<account>.blob.core.windows.net/
<container>); with a connection string, the container CONTAINER_NAME under the string's Blob
endpoint. Read from the release's values, else from the Secret its pods read (a user's own
Secret, global.s3.existingSecret): the account and URL are not secrets; a connection string
is, and is only parsed here for its AccountName."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UsageError
from ...kube.connection import Kube
from ...stores.settings import account_in, register_connection_string
from . import chart as mender
from .live_secrets import live_keys

URI_KEY = "AZURE_AUTH_SHARED_KEY_URI"
SECRET_KEYS = ("STORAGE_BUCKET", "AZURE_AUTH_SHARED_KEY_ACCOUNT_NAME", URI_KEY, "AZURE_AUTH_CONNECTION_STRING")


@dataclass(frozen=True)
class AzureLocation:
    account: str
    container: str
    endpoint: str = ""      # the Blob service URL when Mender names the container's URL (shared key + URI)
    named: str = ""         # CONTAINER_NAME (the Secret's STORAGE_BUCKET): what the backup CronJob reads live

    def check_followable(self) -> None:
        """The backup CronJob reads the container from STORAGE_BUCKET, live; where the URI
        Mender uses names another one, the CronJob would back up the wrong container."""
        if self.endpoint and self.named != self.container:
            raise UsageError(f"global.azure.AUTH_SHARED_KEY_URI names container {self.container!r} (Mender uses it) "
                             f"but CONTAINER_NAME is {self.named!r}: set global.azure.CONTAINER_NAME to "
                             f"{self.container!r} so that backups follow the container Mender uses")

    @property
    def url(self) -> str:
        return f"azure://{self.account}/{self.container}"

    def container_url(self, container: str) -> str:
        """The URI Mender must be given for `container` (only where it was given one)."""
        return f"{self.endpoint}/{container}"


def azure_location(kube: Kube, ns: str, mv: mender.MenderValues) -> AzureLocation:
    held = live_keys(kube, ns, mv.s3_secret, SECRET_KEYS)
    register_connection_string(held.get("AZURE_AUTH_CONNECTION_STRING"))

    def setting(value: str, key: str) -> str:
        return str(mv.get(("global", "azure", value)) or held.get(key) or "")

    connection_string = setting("AUTH_CONNECTION_STRING", "AZURE_AUTH_CONNECTION_STRING")
    account = (account_in(connection_string) if connection_string
               else setting("AUTH_SHARED_KEY_ACCOUNT_NAME", "AZURE_AUTH_SHARED_KEY_ACCOUNT_NAME"))
    if not account:
        raise UsageError("the release stores artifacts in Azure but names no storage account "
                         "(global.azure.AUTH_SHARED_KEY_ACCOUNT_NAME or AccountName= in AUTH_CONNECTION_STRING); "
                         "nothing was changed")
    named = held.get("STORAGE_BUCKET") or str(mv.get(mender.CONTAINER) or "")
    uri = "" if connection_string else setting("AUTH_SHARED_KEY_URI", URI_KEY).rstrip("/")
    if uri:
        endpoint, _, container = uri.rpartition("/")
        return AzureLocation(account, container, endpoint, named)
    if not named:
        raise UsageError(f"the release stores artifacts in Azure but names no container (global.azure.CONTAINER_NAME, "
                         f"{mv.s3_secret}'s STORAGE_BUCKET); nothing was changed")
    return AzureLocation(account, named, named=named)
