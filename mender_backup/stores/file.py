"""`file:///path`: a folder (a local disk, NFS, a PersistentVolume).

Objects are written under a temporary name and renamed into place; the
manifest alone is fsynced, after one syncfs of the whole destination.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import MenderBackupError, NotFoundError, UsageError
from .base import ObjectInfo, Store

PARTIAL = ".partial"
PARTIAL_IDLE_SECONDS = 600


class FileStore(Store):
    local = True

    def __init__(self, root: Path, url: str):
        self.root = root
        self.url = url

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise UsageError(f"key {key!r} escapes the destination")
        return path

    @contextlib.contextmanager
    def open_write(self, key: str, durable: bool = False):
        # no fsync per object (thousands of artifacts): `sync()` flushes them all at once
        # before the manifest, which alone is fsynced
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as f:
                yield f
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            if durable:     # the rename itself: the folder's entry
                _fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_durable(self, key: str, data: bytes) -> None:
        with self.open_write(key, durable=True) as f:
            f.write(data)

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb", buffering=1 << 20)
        except FileNotFoundError:
            raise NotFoundError(f"{key} not found at {self}") from None
        except OSError as exc:      # a folder where a file should be, no permission, ...
            raise MenderBackupError(f"reading {key} from {self}: {exc.strerror}") from None

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
                if name.endswith(PARTIAL) or not key.startswith(prefix):
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

    def check(self, write: bool = True) -> None:
        if not write:
            if not self.root.is_dir():
                raise NotFoundError(f"{self}: no such folder")
            if not os.access(self.root, os.R_OK | os.X_OK):
                raise UsageError(f"cannot read {self}: permission denied")
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise UsageError(f"cannot write to {self}: {exc.strerror}") from None

    def abort_unfinished_writes(self, under: tuple[str, ...]) -> int:
        """The temporary files of writes a killed run never finished (.<name>.<random>.partial),
        once untouched for PARTIAL_IDLE_SECONDS: a live write (a verdict, written without the
        lock) keeps its file's time fresh."""
        n = 0
        idle_since = time.time() - PARTIAL_IDLE_SECONDS
        for prefix in under:
            top = self._path(prefix)
            if not top.is_dir():
                continue
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    path = Path(dirpath) / name
                    with contextlib.suppress(FileNotFoundError):
                        if name.endswith(PARTIAL) and path.stat().st_mtime < idle_since:
                            path.unlink()
                            n += 1
        return n

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
