"""The interface every destination implements: objects under '/'-separated keys.

Writes are all-or-nothing: a reader never sees half an object. Everything the
engine needs from a store is a method here, so no caller asks which kind of
store it holds.
"""

from __future__ import annotations

import contextlib
import io
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from ..redact import redact_url


@dataclass(frozen=True)
class ObjectInfo:
    key: str          # relative to the store's prefix
    size: int
    etag: str = ""


class Store(ABC):
    """A place that holds objects under keys (relative, '/'-separated)."""

    url: str
    local = False      # objects are files on this machine: reading one again costs no transfer

    @abstractmethod
    def open_write(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A stream whose object appears, whole, only when the block exits cleanly."""

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
    def check(self, write: bool = True) -> None:
        """Fail early with a clear error when the store cannot be reached (or, with `write`,
        written: a listing needs only to read, and works on a read-only destination)."""

    def replace(self, key: str, data: bytes) -> None:
        """Overwrite an existing small object in one piece (a lock's heartbeat)."""
        self.put_bytes(key, data)

    def sync(self) -> None:
        """Make everything written so far durable (before the manifest, the commit point)."""

    def put_durable(self, key: str, data: bytes) -> None:
        """Write a commit point (a manifest, a verdict): whole and durable when this returns."""
        self.put_bytes(key, data)

    def abort_unfinished_writes(self, under: tuple[str, ...]) -> int:
        """Remove what killed runs left half-written below these key prefixes (never outside
        them: another run, or another destination in the same bucket, may be writing there);
        returns how many. Only for the holder of the lock that covers those prefixes."""
        return 0

    def copy_within_service(self, src: "Store", src_key: str, key: str, size: int) -> bool:
        """Copy `src_key` of `src` to `key` here without the bytes passing through
        this process, when both stores allow it; False when they do not."""
        return False

    def get_bytes(self, key: str) -> bytes:
        with contextlib.closing(self.open_read(key)) as f:
            return f.read()

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as f:
            f.write(data)

    def __str__(self) -> str:
        return redact_url(self.url)


class RemoteStore(Store):
    """A store behind a network service (S3, Azure Blob): objects under `prefix`, one client
    made on first use and shared by the copy threads (the SDKs' clients are thread-safe, and a
    new one costs: boto3 parses its service model again, ~150 ms of CPU and ~12 MiB)."""

    def __init__(self, prefix: str, url: str):
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = url
        self._client = None
        self._client_lock = threading.Lock()

    def _make_client(self):
        raise NotImplementedError

    @property
    def client(self):
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def full_key(self, key: str) -> str:
        return self.prefix + key


class PartWriter(io.RawIOBase):
    """A write-only stream cut into parts of `part_size`, each sent as it fills (`_send_part`,
    which returns what `_complete` needs of it). `finish` makes the object appear, whole: one
    that never filled a part in one request (`_put_whole`), else the rest as the last part,
    then `_complete`. Subclasses: S3's multipart upload, Azure's staged blocks."""

    def __init__(self, part_size: int):
        self._part_size = part_size
        self._buf = bytearray()
        self._parts: list = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._buf += b
        while len(self._buf) >= self._part_size:
            self._parts.append(self._send_part(bytes(self._buf[:self._part_size])))
            del self._buf[:self._part_size]
        return len(b)

    def finish(self) -> None:
        if not self._parts:
            self._put_whole(bytes(self._buf))
            return
        if self._buf:
            self._parts.append(self._send_part(bytes(self._buf)))
            self._buf.clear()
        self._complete()

    def _send_part(self, data: bytes):
        raise NotImplementedError

    def _put_whole(self, data: bytes) -> None:
        raise NotImplementedError

    def _complete(self) -> None:
        raise NotImplementedError


class ChunkReader(io.RawIOBase):
    """A raw read stream over an SDK's response body (anything with read(n)), closing it
    with itself where it can be closed."""

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
            getattr(self._body, "close", lambda: None)()
        super().close()
