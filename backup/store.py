"""Destinations: `s3://bucket/prefix` and `file:///path`, behind one interface.

Writes are all-or-nothing: a file is written under a temporary name and renamed;
an S3 object is a multipart upload that is completed only when the stream closed
cleanly and aborted otherwise. A reader never sees half an object.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlparse

from .errors import ConflictError, MenderBackupError, NotFoundError, UnreachableError, UsageError
from .redact import redact_url, register_secret

# S3 multipart part size: 16 MiB x 10,000 parts = 156 GiB per object; S3's minimum is 5 MiB
PART_SIZE = max(5 << 20, int(os.environ.get("MENDER_BACKUP_S3_PART_SIZE", 16 << 20)))


@dataclass(frozen=True)
class ObjectInfo:
    key: str          # relative to the store's prefix
    size: int
    etag: str = ""


class Store(ABC):
    """A place that holds objects under keys (relative, '/'-separated)."""

    url: str

    @abstractmethod
    def open_write(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def delete(self, keys: list[str]) -> None: ...

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create `key` only if it does not exist; False when it does."""

    @abstractmethod
    def check(self) -> None:
        """Fail early with a clear error when the store cannot be reached or written."""

    def sync(self) -> None:
        """Make everything written so far durable (before the manifest, the commit point)."""

    def exists(self, key: str) -> bool:
        return any(o.key == key for o in self.list(key))

    def get_bytes(self, key: str) -> bytes:
        with contextlib.closing(self.open_read(key)) as f:
            return f.read()

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as f:
            f.write(data)

    def __str__(self) -> str:
        return redact_url(self.url)


# --------------------------------------------------------------------------- file


class FileStore(Store):
    def __init__(self, root: Path, url: str):
        self.root = root
        self.url = url

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise UsageError(f"key {key!r} escapes the destination")
        return path

    @contextlib.contextmanager
    def open_write(self, key: str):
        # no fsync per object (thousands of artifacts): `sync()` flushes them all at once
        # before the manifest, which alone is fsynced
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as f:
                yield f
                if key.endswith("manifest.json"):
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb", buffering=1 << 20)
        except FileNotFoundError:
            raise NotFoundError(f"{key} not found at {self}") from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root
        if not base.exists():
            return
        start = self._path(prefix) if prefix else base
        top = start if start.is_dir() else start.parent
        if not top.exists():
            return
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                full = Path(dirpath) / name
                key = full.relative_to(base).as_posix()
                if name.endswith(".partial") or not key.startswith(prefix):
                    continue
                yield ObjectInfo(key, full.stat().st_size)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise UsageError(f"cannot write to {self}: {exc.strerror}") from None

    def sync(self) -> None:
        """One flush for every file written, of this filesystem only (os.sync would wait on
        every other pod's writes on a busy node); Python 3.11 has no os.syncfs."""
        try:
            syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            os.sync()
            return
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(self.root))
        finally:
            os.close(fd)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free


# --------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom to reach an S3 service. Empty fields fall back to the
    standard AWS chain (env, config files, IRSA/instance roles)."""
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    addressing_style: str = "auto"

    @classmethod
    def from_env(cls, prefix: str = "", fallback: "S3Settings | None" = None) -> "S3Settings":
        def get(name: str) -> str | None:
            return os.environ.get(prefix + name) or None
        base = fallback or cls()
        endpoint = get("AWS_ENDPOINT_URL") or base.endpoint_url
        style = (os.environ.get("MENDER_BACKUP_S3_ADDRESSING_STYLE")
                 or ("path" if endpoint else base.addressing_style))
        settings = cls(
            endpoint_url=endpoint,
            region=get("AWS_REGION") or get("AWS_DEFAULT_REGION") or base.region,
            access_key=get("AWS_ACCESS_KEY_ID") or base.access_key,
            secret_key=get("AWS_SECRET_ACCESS_KEY") or base.secret_key,
            session_token=get("AWS_SESSION_TOKEN") or base.session_token,
            addressing_style=style,
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


def s3_error(exc: Exception, what: str) -> MenderBackupError:
    """Translate botocore errors into ours: one line, the right exit code."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

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
    return MenderBackupError(f"{what}: {type(exc).__name__}: {exc}")


class _MultipartWriter(io.RawIOBase):
    """A write-only stream that uploads in parts; completed by `finish`, aborted by `abort`."""

    def __init__(self, client, bucket: str, key: str):
        self._c, self._bucket, self._key = client, bucket, key
        self._buf = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._buf += b
        while len(self._buf) >= PART_SIZE:
            self._flush_part(bytes(self._buf[:PART_SIZE]))
            del self._buf[:PART_SIZE]
        return len(b)

    def _flush_part(self, data: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._c.create_multipart_upload(Bucket=self._bucket, Key=self._key)["UploadId"]
        n = len(self._parts) + 1
        etag = self._c.upload_part(Bucket=self._bucket, Key=self._key, PartNumber=n,
                                   UploadId=self._upload_id, Body=data)["ETag"]
        self._parts.append({"PartNumber": n, "ETag": etag})

    def finish(self) -> None:
        if self._upload_id is None:      # small object: one PUT
            self._c.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buf))
            return
        if self._buf:
            self._flush_part(bytes(self._buf))
            self._buf.clear()
        self._c.complete_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                                          MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._c.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)


class _S3Reader(io.RawIOBase):
    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._body.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, settings: S3Settings, url: str):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.settings = settings
        self.url = url
        self._client = None
        self._client_lock = threading.Lock()

    @property
    def client(self):
        # one client shared by the copy threads: boto3 clients are thread-safe, and each new
        # one costs ~150 ms of CPU and ~12 MiB (it parses the S3 service model again)
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self.settings.client()
        return self._client

    def full_key(self, key: str) -> str:
        return self.prefix + key

    @contextlib.contextmanager
    def open_write(self, key: str):
        w = _MultipartWriter(self.client, self.bucket, self.full_key(key))
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
        return io.BufferedReader(_S3Reader(obj["Body"]), buffer_size=1 << 20)

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

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            from botocore.exceptions import ClientError
            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise NotFoundError(f"{self}: bucket {self.bucket!r} does not exist") from None
            raise s3_error(exc, f"{self}") from None

    def abort_stale_uploads(self) -> int:
        """Abort multipart uploads left by a killed run (they cost storage, are invisible to list)."""
        n = 0
        try:
            # no Prefix in the request: MinIO only honours one that names a whole object key
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
            for page in pages:
                for up in page.get("Uploads", []):
                    if not up["Key"].startswith(self.prefix):
                        continue
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    n += 1
        except Exception as exc:
            raise s3_error(exc, f"cleaning up uploads in {self}") from None
        return n


def _is_boto(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("botocore", "boto3", "urllib3"))


def parse_destination(url: str) -> tuple[str, str, str]:
    """Check a destination's syntax, offline: -> (scheme, bucket or "", path or prefix)."""
    if not url:
        raise UsageError("no destination given (--destination or MENDER_BACKUP_DESTINATION)")
    if url.startswith("/"):
        url = "file://" + url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise UsageError(f"bad file URL {redact_url(url)!r}: use file:///absolute/path")
        return "file", "", parsed.path
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise UsageError(f"bad S3 URL {redact_url(url)!r}: use s3://bucket/prefix")
        return "s3", parsed.netloc, parsed.path.lstrip("/")
    raise UsageError(f"unsupported destination {redact_url(url)!r}: use s3://bucket/prefix or file:///path")


def open_store(url: str, s3: S3Settings | None = None) -> Store:
    """`s3://bucket/prefix` or `file:///absolute/path` (a plain absolute path works too)."""
    scheme, bucket, path = parse_destination(url)
    if scheme == "file":
        return FileStore(Path(path), url if url.startswith("file:") else "file://" + url)
    return S3Store(bucket, path, s3 or S3Settings.from_env(), url)


def sha256_of(stream: BinaryIO, chunk: int = 1 << 20) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    while data := stream.read(chunk):
        h.update(data)
        n += len(data)
    return h.hexdigest(), n
