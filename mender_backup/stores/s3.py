"""`s3://bucket/prefix`: an S3 service (AWS, MinIO, Ceph, ...).

Every object is written as a multipart upload that is completed only when the
stream closed cleanly and aborted otherwise (a small one as a single PUT at the
end): a reader never sees half an object. botocore's errors become ours here,
one line each, with the exit code they mean.
"""

from __future__ import annotations

import contextlib
import io
from typing import BinaryIO, Iterator

from ..errors import ConflictError, MenderBackupError, NotFoundError, UnreachableError
from .base import ChunkReader, ObjectInfo, PartWriter, RemoteStore, Store
from .settings import S3Settings

# S3 copies at most 5 GiB in one CopyObject; larger objects need a multipart copy
SINGLE_COPY_LIMIT = 5 * 1024**3


def s3_error(exc: Exception, what: str) -> MenderBackupError:
    """Translate botocore errors into ours: one line, the right exit code."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        msg = exc.response.get("Error", {}).get("Message", "") or code
        if code in ("NoSuchBucket",):
            return NotFoundError(f"{what}: bucket does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFoundError(f"{what}: not found")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                    "InvalidToken", "ExpiredToken"):
            return UnreachableError(f"{what}: access denied ({code}); check the S3 credentials")
        if code in ("PreconditionFailed", "412"):
            return ConflictError(f"{what}: already exists")
        return MenderBackupError(f"{what}: {code}: {msg}")
    if isinstance(exc, NoCredentialsError):
        return UnreachableError(f"{what}: no S3 credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, EndpointConnectionError):
        return UnreachableError(f"{what}: cannot connect to the S3 endpoint")
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):    # reset, closed, timed out: after retries
        return UnreachableError(f"{what}: lost the connection to the S3 endpoint ({type(exc).__name__})")
    return MenderBackupError(f"{what}: {type(exc).__name__}: {exc}")


class _MultipartWriter(PartWriter):
    """An S3 multipart upload; completed by `finish`, aborted by `abort`."""

    def __init__(self, client, bucket: str, key: str, part_size: int):
        super().__init__(part_size)
        self._c, self._bucket, self._key = client, bucket, key
        self._upload_id: str | None = None
        self._create_sent = False

    def _send_part(self, data: bytes) -> dict:
        if self._upload_id is None:
            self._create_sent = True
            self._upload_id = self._c.create_multipart_upload(Bucket=self._bucket, Key=self._key)["UploadId"]
        n = len(self._parts) + 1
        etag = self._c.upload_part(Bucket=self._bucket, Key=self._key, PartNumber=n,
                                   UploadId=self._upload_id, Body=data)["ETag"]
        return {"PartNumber": n, "ETag": etag}

    def _put_whole(self, data: bytes) -> None:
        self._c.put_object(Bucket=self._bucket, Key=self._key, Body=data)

    def _complete(self) -> None:
        self._c.complete_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                                          MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            for upload_id in self._upload_ids():
                self._c.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)

    def _upload_ids(self) -> list[str]:
        if self._upload_id is not None:
            return [self._upload_id]
        if not self._create_sent:
            return []
        # a signal between the service creating the upload and its answer reaching us: the id
        # is only on the service. A key written in parts is this run's alone (the archive under
        # its backup's id; an artifact under the destination's lock), so its uploads are ours.
        listed = self._c.list_multipart_uploads(Bucket=self._bucket, Prefix=self._key)
        return [u["UploadId"] for u in listed.get("Uploads", []) if u["Key"] == self._key]


class S3Store(RemoteStore):
    def __init__(self, bucket: str, prefix: str, settings: S3Settings, url: str):
        super().__init__(prefix, url)
        self.bucket = bucket
        self.settings = settings

    def _make_client(self):
        return self.settings.client()

    @contextlib.contextmanager
    def open_write(self, key: str):
        w = _MultipartWriter(self.client, self.bucket, self.full_key(key), self.settings.part_size)
        try:
            yield w
            w.finish()
        except BaseException as exc:
            w.abort()
            if isinstance(exc, MenderBackupError) or not _is_boto(exc):
                raise
            raise s3_error(exc, f"writing {key} to {self}") from None

    def open_read(self, key: str) -> BinaryIO:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))
        except Exception as exc:
            raise s3_error(exc, f"reading {key} from {self}") from None
        return io.BufferedReader(ChunkReader(obj["Body"]), buffer_size=1 << 20)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.full_key(prefix))
            for page in pages:
                for o in page.get("Contents", []):
                    yield ObjectInfo(o["Key"][len(self.prefix):], o["Size"], o.get("ETag", "").strip('"'))
        except Exception as exc:
            raise s3_error(exc, f"listing {self}") from None

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": self.full_key(k)} for k in keys[i:i + 1000]]
            try:
                resp = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            except Exception as exc:
                raise s3_error(exc, f"deleting from {self}") from None
            if resp.get("Errors"):
                e = resp["Errors"][0]
                raise MenderBackupError(f"deleting {e.get('Key')} from {self}: {e.get('Code')}")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.full_key(key), Body=data, IfNoneMatch="*")
            return True
        except Exception as exc:
            err = s3_error(exc, f"creating {key}")
            if isinstance(err, ConflictError):
                return False
            raise err from None

    def check(self, write: bool = True) -> None:
        # HEAD of the bucket proves it exists and the credentials work; a write is proven by
        # the lock, the first object any writing command creates
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            from botocore.exceptions import ClientError
            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise NotFoundError(f"{self}: bucket {self.bucket!r} does not exist") from None
            raise s3_error(exc, f"{self}") from None

    def copy_within_service(self, src: Store, src_key: str, key: str, size: int) -> bool:
        if not isinstance(src, S3Store) or not src.settings.same_service(self.settings):
            return False
        source = {"Bucket": src.bucket, "Key": src.full_key(src_key)}
        try:
            if size < SINGLE_COPY_LIMIT:     # one request; the managed copy would HEAD first
                self.client.copy_object(CopySource=source, Bucket=self.bucket, Key=self.full_key(key))
            else:
                self.client.copy(source, self.bucket, self.full_key(key))
        except Exception as exc:
            raise s3_error(exc, f"copying {src_key}") from None
        return True

    def abort_unfinished_writes(self, under: tuple[str, ...]) -> int:
        """Abort multipart uploads left by a killed run (they cost storage, are invisible to
        list), below `under` only: the oplog run's uploads, or another destination's in the
        same bucket, are not ours to abort."""
        prefixes = tuple(self.full_key(p) for p in under)
        n = 0
        try:
            # no Prefix in the request: MinIO only honours one that names a whole object key
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
            for page in pages:
                for up in page.get("Uploads", []):
                    if not prefixes or not up["Key"].startswith(prefixes):
                        continue
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    n += 1
        except Exception as exc:
            raise s3_error(exc, f"cleaning up uploads in {self}") from None
        return n


def _is_boto(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("botocore", "boto3", "urllib3"))
