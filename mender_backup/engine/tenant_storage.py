"""Per-tenant artifact stores. Mender's deployments service lets a tenant keep its artifacts
in a store of its own: its storage settings (database `deployment_service-<tenant>`,
collection `settings`, the document `_id: "settings"`; set through the internal API
`PUT /api/internal/v1/deployments/tenants/<id>/storage/settings`) name an S3 bucket or an
Azure container, where it calls it, and as whom. Such a tenant's artifacts are there, under
`<tenant>/`, as they would be in the release's bucket; a backup of that bucket alone misses
them.

The settings carry credentials (key, secret, token, connection string). They are read from
the database, used to reach the store, registered as secrets (so no output shows them), and
never written anywhere but back into the restored database: the manifest describes each
store by `describe()`, without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

from ..errors import UsageError
from ..redact import redact_url, register_secret
from ..stores import AzureSettings, AzureStore, S3Settings, S3Store, Store
from ..stores.settings import account_in, register_connection_string

DEPLOYMENTS_DB = "deployment_service"     # tenant databases: deployment_service-<tenant>
SETTINGS_COLLECTION = "settings"
SETTINGS_ID = "settings"
_SECRET_FIELDS = ("secret", "token")       # and connection_string, with its parts


@dataclass(frozen=True)
class TenantStorage:
    """One tenant's store, as its settings document says."""
    tenant: str
    type: str                 # "s3" or "azure"
    bucket: str               # the bucket (s3) or container (azure)
    uri: str = ""             # s3: the endpoint; azure: the container's URL (both optional)
    region: str = ""
    force_path_style: bool = False
    external_uri: str = ""
    key: str = ""             # s3: the access key id; azure: the account name
    secret: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    connection_string: str = field(default="", repr=False)

    @property
    def prefix(self) -> str:
        """Where its artifacts are in the store: Mender's keys are `<tenant>/<artifact id>`."""
        return f"{self.tenant}/"

    @property
    def database(self) -> str:
        return f"{DEPLOYMENTS_DB}-{self.tenant}"

    def describe(self) -> dict:
        """What the manifest records: where, never as whom (not even a password inside its URI)."""
        return {"type": self.type, "bucket": self.bucket, "uri": redact_url(self.uri), "region": self.region}

    def label(self) -> str:
        return f"tenant {self.tenant}'s {'container' if self.type == 'azure' else 'bucket'} {self.bucket}"

    def store(self) -> Store:
        """The store its settings name, reached with its own credentials."""
        if self.type == "azure":
            return self._azure()
        settings = S3Settings(endpoint_url=self.uri or None, region=self.region or None,
                              access_key=self.key or None, secret_key=self.secret or None,
                              session_token=self.token or None,
                              addressing_style="path" if self.force_path_style else "auto")
        return S3Store(self.bucket, "", settings, f"s3://{self.bucket}")

    def _azure(self) -> Store:
        if self.connection_string:
            settings = AzureSettings(connection_string=self.connection_string)
            account = account_in(self.connection_string)
        else:
            # Mender's URI is the container's URL: the Blob service's is what comes before it
            endpoint = self.uri.rstrip("/").removesuffix("/" + self.bucket) if self.uri else None
            settings = AzureSettings(account_key=self.secret or None, blob_endpoint=endpoint)
            account = self.key
        if not account:
            raise UsageError(f"{self.label()}: its storage settings name no Azure account")
        return AzureStore(account, self.bucket, "", settings, f"azure://{account}/{self.bucket}")

    def moved_to(self, bucket: str) -> "TenantStorage":
        """The same service and credentials, another bucket or container (--tenant-storage-map)."""
        return replace(self, bucket=bucket, **self._urls_for(bucket))

    def _urls_for(self, bucket: str) -> dict:
        """Azure's URIs name the container (…/<container>): they follow it; S3's name the endpoint."""
        if self.type != "azure":
            return {}
        return {name: url.rstrip("/").removesuffix("/" + self.bucket) + "/" + bucket
                for name, url in (("uri", self.uri), ("external_uri", self.external_uri)) if url}

    def changes_to(self, other: "TenantStorage") -> dict:
        """The settings document's fields to $set to go from this store to `other`."""
        return {name: getattr(other, name) for name in ("bucket", "uri", "external_uri")
                if getattr(other, name) != getattr(self, name)}


def from_document(tenant: str, doc: dict) -> TenantStorage:
    """A settings document (Mender's model.StorageSettings: type is "s3" or "azure") ->
    TenantStorage; its secrets are registered before anything can print them."""
    for name in _SECRET_FIELDS:
        register_secret(doc.get(name) if isinstance(doc.get(name), str) else None)
    if isinstance(doc.get("connection_string"), str):
        register_connection_string(doc["connection_string"])
    kind = doc.get("type", "s3")
    # the Go driver stores the model's StorageType (uint32) as a number, 0 for s3 and 1 for
    # azure; its JSON form, and so a hand-written document, says "s3"/"azure"
    if isinstance(kind, int) and not isinstance(kind, bool):
        kind = {0: "s3", 1: "azure"}.get(kind, kind)
    if kind not in ("s3", "azure") or not isinstance(doc.get("bucket"), str) or not doc.get("bucket"):
        raise UsageError(f"tenant {tenant}: its storage settings in {DEPLOYMENTS_DB}-{tenant}.{SETTINGS_COLLECTION} "
                         f"are not Mender's (type {kind!r}, bucket {doc.get('bucket')!r})")

    def text(name: str) -> str:
        value = doc.get(name)
        return value if isinstance(value, str) else ""
    return TenantStorage(tenant, kind, doc["bucket"], text("uri"), text("region"), bool(doc.get("force_path_style")),
                         text("external_uri"), text("key"), text("secret"), text("token"),
                         text("connection_string"))


def tenant_of(database: str) -> str | None:
    """`deployment_service-<tenant>` -> the tenant; any other database -> None."""
    tenant = database.removeprefix(DEPLOYMENTS_DB + "-")
    return tenant if tenant != database and tenant else None


def read(client, databases: Iterable[str]) -> list[TenantStorage]:
    """The tenants among `databases` with storage settings of their own, from a live server."""
    found = []
    for db in sorted(databases):
        tenant = tenant_of(db)
        if tenant is None:
            continue
        doc = client[db][SETTINGS_COLLECTION].find_one({"_id": SETTINGS_ID})
        if doc is not None:
            found.append(from_document(tenant, doc))
    return found


def from_archive(stream, tenants: Iterable[str]) -> dict[str, TenantStorage]:
    """The settings of `tenants` as an archive holds them (compressed bytes, proven before):
    a restore reaches each tenant's store before it writes anything, so it needs them before
    the documents are in. One more read of the archive, made only for backups with tenant
    stores; the settings are small, but they can be anywhere in it."""
    import bson
    from ..format import compression
    from ..format.archive import ArchiveReader, iter_documents
    wanted = {(f"{DEPLOYMENTS_DB}-{t}", SETTINGS_COLLECTION): t for t in tenants}
    found: dict[str, TenantStorage] = {}
    _, plain = compression.decompressor(stream)
    for seg in ArchiveReader(plain).segments():
        tenant = wanted.get((seg.db, seg.collection))
        for raw in iter_documents(seg.data) if tenant else ():
            doc = bson.decode(bytes(raw))
            if doc.get("_id") == SETTINGS_ID:
                found[tenant] = from_document(tenant, doc)
    return found


def parse_map(pairs: list[str]) -> dict[str, str]:
    """--tenant-storage-map TENANT=BUCKET (repeatable) -> {tenant: bucket or container}."""
    moves: dict[str, str] = {}
    for pair in pairs:
        tenant, sep, bucket = pair.partition("=")
        tenant, bucket = tenant.strip(), bucket.strip()
        if not sep or not tenant or not bucket or "/" in bucket:
            raise UsageError(f"--tenant-storage-map {pair!r}: give TENANT=BUCKET (a bucket or container name)")
        if tenant in moves and moves[tenant] != bucket:
            raise UsageError(f"--tenant-storage-map names tenant {tenant} twice")
        moves[tenant] = bucket
    return moves
