"""`azure://account/container/prefix`: Azure Blob Storage (and Azurite, its emulator).

The same promises as S3 (stores/s3.py), with Azure's own means: an object is a block
blob whose blocks are staged as they stream and committed in one Put Block List when the
stream closes cleanly (a small one is a single Put Blob at the end), so a reader never
sees half of it; a lock is created with If-None-Match: * (`overwrite=False`). Blocks
staged by a run that died are not listed and cannot be deleted alone: Azure discards
uncommitted blocks after a week, so `abort_unfinished_writes` has nothing to do.
The SDK's errors become ours here, one line each, with the exit code they mean.
"""

from __future__ import annotations

import base64
import contextlib
import io
import time
from typing import BinaryIO, Iterator

from ..errors import ConflictError, MenderBackupError, NotFoundError, UnreachableError
from .base import ChunkReader, ObjectInfo, PartWriter, RemoteStore, Store
from .settings import AzureSettings

RETRIES = 6
DELETE_BATCH = 256          # the most sub-requests one Blob Batch takes
COPY_POLL_SECONDS = 0.5
COPY_TIMEOUT_SECONDS = 3600      # one artifact copied within the account; Azure's own limit is two weeks


def azure_error(exc: Exception, what: str) -> MenderBackupError:
    """Translate azure-core errors into ours: one line, the right exit code."""
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceExistsError,
                                       ResourceNotFoundError, ServiceRequestError, ServiceResponseError)

    code = getattr(exc, "error_code", None) or ""
    code = str(getattr(code, "value", code))       # the SDK's StorageErrorCode enum, or a plain string
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"{what}: container does not exist" if code == "ContainerNotFound"
                             else f"{what}: not found")
    if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code == 403):
        return UnreachableError(f"{what}: access denied ({code or 'authentication failed'}); "
                                "check the Azure credentials")
    if isinstance(exc, ResourceExistsError) or code in ("BlobAlreadyExists", "ConditionNotMet"):
        return ConflictError(f"{what}: already exists")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return UnreachableError(f"{what}: lost the connection to Azure Blob Storage ({type(exc).__name__})")
    if type(exc).__name__ == "CredentialUnavailableError":
        return UnreachableError(f"{what}: no Azure credentials found (set AZURE_STORAGE_KEY, "
                                "AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_SAS_TOKEN, "
                                "or give the pod a workload identity)")
    if isinstance(exc, HttpResponseError):
        return MenderBackupError(f"{what}: {code or exc.status_code}: {str(exc.message or exc.reason).splitlines()[0]}")
    return MenderBackupError(f"{what}: {type(exc).__name__}")


def _is_azure(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("azure.", "urllib3", "requests"))


class _BlockWriter(PartWriter):
    """A block blob whose blocks are staged as they fill; committed by `finish`. Nothing to
    abort: blocks never committed are invisible and Azure drops them."""

    def __init__(self, blob, block_size: int):
        super().__init__(block_size)
        self._blob = blob

    def _send_part(self, data: bytes) -> str:
        # ids of one blob must all have the same length: a zero-padded counter
        block_id = base64.b64encode(f"{len(self._parts):08d}".encode()).decode()
        self._blob.stage_block(block_id, data, length=len(data))
        return block_id

    def _put_whole(self, data: bytes) -> None:
        self._blob.upload_blob(data, overwrite=True)

    def _complete(self) -> None:
        from azure.storage.blob import BlobBlock

        self._blob.commit_block_list([BlobBlock(block_id=i) for i in self._parts])


class AzureStore(RemoteStore):
    def __init__(self, account: str, container: str, prefix: str, settings: AzureSettings, url: str):
        super().__init__(prefix, url)
        self.account, self.container = account, container
        self.settings = settings

    def _make_client(self):
        return self._service().get_container_client(self.container)

    def _service(self):
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        s = self.settings
        # 6 retries about 1, 3, 5, 9, 17, 33 s apart, whatever failed (the SDK's default waits 15 s,
        # then 18, 24..., and gives up after 3 of a kind); a chunk of 4 MiB per GET keeps reads small
        retries = {f"retry_{kind}": RETRIES for kind in ("total", "connect", "read", "status")}
        opts = dict(retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, **retries),
                    connection_timeout=10, read_timeout=120, max_single_get_size=4 << 20, max_chunk_get_size=4 << 20)
        if s.connection_string:
            service = BlobServiceClient.from_connection_string(s.connection_string, **opts)
            if service.account_name != self.account:
                raise MenderBackupError(f"{self}: the connection string is for account "
                                        f"{service.account_name!r}, not {self.account!r}", exit_code=2)
            return service
        url = s.blob_endpoint or f"https://{self.account}.blob.core.windows.net"
        if s.account_key:
            credential = {"account_name": self.account, "account_key": s.account_key}
        elif s.sas_token:
            credential = s.sas_token
        else:
            from azure.identity import DefaultAzureCredential
            credential = DefaultAzureCredential()
        return BlobServiceClient(url, credential=credential, **opts)

    @property
    def bucket(self) -> str:
        """The name `bucket_store` takes back (a manifest's artifacts_bucket)."""
        return f"azure://{self.account}/{self.container}"

    def _blob(self, key: str):
        return self.client.get_blob_client(self.full_key(key))

    def _fail(self, exc: BaseException, what: str):
        if isinstance(exc, MenderBackupError) or not isinstance(exc, Exception):
            raise exc
        raise azure_error(exc, what) from None

    @contextlib.contextmanager
    def open_write(self, key: str):
        w = _BlockWriter(self._blob(key), self.settings.block_size)
        try:
            yield w
            w.finish()
        except BaseException as exc:
            if isinstance(exc, MenderBackupError) or not _is_azure(exc):
                raise
            raise azure_error(exc, f"writing {key} to {self}") from None

    def open_read(self, key: str) -> BinaryIO:
        try:
            downloader = self._blob(key).download_blob()
        except Exception as exc:
            self._fail(exc, f"reading {key} from {self}")
        return io.BufferedReader(ChunkReader(downloader), buffer_size=1 << 20)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            for b in self.client.list_blobs(name_starts_with=self.full_key(prefix), include=["copy"]):
                # a server-side copy still running (or failed) already has its final size: it is
                # not there yet, or an incremental backup would take it for copied
                if b.copy is None or b.copy.status in (None, "success"):
                    yield ObjectInfo(b.name[len(self.prefix):], b.size, (b.etag or "").strip('"'))
        except Exception as exc:
            self._fail(exc, f"listing {self}")

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            names = [self.full_key(k) for k in keys[i:i + DELETE_BATCH]]
            try:
                answers = list(self.client.delete_blobs(*names, raise_on_any_failure=False))
            except Exception as exc:
                self._fail(exc, f"deleting from {self}")
            for name, answer in zip(names, answers):
                if answer.status_code not in (200, 202, 404):      # 404: gone already, as S3 says
                    raise MenderBackupError(f"deleting {name[len(self.prefix):]} from {self}: "
                                            f"HTTP {answer.status_code}")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        try:
            self._blob(key).upload_blob(data, overwrite=False)      # If-None-Match: *
            return True
        except Exception as exc:
            err = azure_error(exc, f"creating {key}") if _is_azure(exc) else exc
            if isinstance(err, ConflictError):
                return False
            raise err from None

    def check(self, write: bool = True) -> None:
        try:
            self.client.get_container_properties()
        except Exception as exc:
            err = azure_error(exc, f"{self}") if _is_azure(exc) else exc
            if isinstance(err, NotFoundError):
                raise NotFoundError(f"{self}: container {self.container!r} does not exist") from None
            self._fail(err, f"{self}")

    def copy_within_service(self, src: Store, src_key: str, key: str, size: int) -> bool:
        # within one account its key authorises the source too; other credentials would need
        # a SAS for the source: the bytes then pass through us
        if not (isinstance(src, AzureStore) and src.account == self.account and self.settings.shared_key
                and src.settings == self.settings):
            return False
        dst = self._blob(key)
        try:
            # the asynchronous Copy Blob: the synchronous one wants a SAS even within the account
            copy = dst.start_copy_from_url(src._blob(src_key).url)
            deadline = time.monotonic() + COPY_TIMEOUT_SECONDS
            while copy.get("copy_status") == "pending":
                if time.monotonic() > deadline:
                    dst.abort_copy(copy["copy_id"])
                    raise MenderBackupError(f"copying {src_key} to {self}: not done after {COPY_TIMEOUT_SECONDS} s")
                time.sleep(COPY_POLL_SECONDS)
                props = dst.get_blob_properties().copy
                copy = {"copy_status": props.status, "copy_id": props.id}
        except Exception as exc:
            self._fail(exc, f"copying {src_key}")
        if copy.get("copy_status") != "success":
            raise MenderBackupError(f"copying {src_key} to {self}: the copy ended {copy.get('copy_status')}")
        return True
