"""Streamed compression of the archive: zstd (default), xz, gzip or none.

Readers detect the format from the stream's first bytes, so an archive from
`mongodump --archive | xz` restores without being told how it was packed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import lzma
import zlib
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import zstandard

from .. import limits
from ..errors import IntegrityError, UsageError

EXTENSIONS = {"zstd": ".zst", "xz": ".xz", "gzip": ".gz", "none": ""}
_MAGIC = {
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\xfd\x37\x7a\x58": "xz",
    b"\x1f\x8b": "gzip",
}
_READ_CHUNK = 1 << 20


def check(kind: str) -> str:
    if kind not in EXTENSIONS:
        raise UsageError(f"unknown compression {kind!r}: choose one of {', '.join(EXTENSIONS)}")
    return kind


class _NoClose(io.RawIOBase):
    """Lets a compressor finish its frame without closing the destination stream."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self._raw.write(b) or len(b)


class _ParallelXZ(io.RawIOBase):
    """xz as `xz -T0` makes it: preset 6, the input cut into blocks of 3 x the dictionary
    (24 MiB), compressed by as many threads as there are cores (liblzma releases the GIL)
    and written in order. Each block is a complete .xz stream: concatenated streams are one
    valid .xz file (`xz -d`, Python's lzma and our restore read it whole). Memory: a block
    and liblzma's ~94 MiB of match finder per thread, as `xz -T0` needs."""

    def __init__(self, out: BinaryIO, preset: int, threads: int):
        from concurrent.futures import ThreadPoolExecutor
        self._out, self._preset = out, preset
        self._block = 3 * (1 << _XZ_DICT_LOG2.get(preset & 0x1F, 23))
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="xz")
        self._threads = threads
        self._buf = bytearray()
        self._pending: list = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._buf += b
        while len(self._buf) >= self._block:
            self._submit(bytes(self._buf[:self._block]))
            del self._buf[:self._block]
        return len(b)

    def _submit(self, block: bytes) -> None:
        self._pending.append(self._pool.submit(lzma.compress, block, format=lzma.FORMAT_XZ, preset=self._preset))
        while len(self._pending) > self._threads:      # bounded: one waiting block per thread
            self._out.write(self._pending.pop(0).result())

    def finish(self) -> None:
        if self._buf or not self._pending:
            self._submit(bytes(self._buf))
            self._buf.clear()
        while self._pending:
            self._out.write(self._pending.pop(0).result())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()


# xz's dictionary size per preset (xz(1)): 0 256 KiB, 1 1 MiB, 2 2 MiB, 3-4 4 MiB, 5-6 8 MiB, 7 16, 8 32, 9 64
_XZ_DICT_LOG2 = {0: 18, 1: 20, 2: 21, 3: 22, 4: 22, 5: 23, 6: 23, 7: 24, 8: 25, 9: 26}


# what one xz thread holds at preset 6: liblzma's match finder (~94 MiB), its 24 MiB input
# block, the compressed block waiting its turn, and slack
XZ_THREAD_BYTES = 160 << 20
XZ_BASE_BYTES = 256 << 20        # the rest of a backup (reader buffers, zstd, boto3), measured ~90 MiB


def xz_threads() -> int:
    """The threads `xz -T0` would use here: one per processor the container may use, fewer
    when its memory limit would not hold them (as xz lowers its threads to its memory limit)."""
    n = limits.cpus()
    mem = limits.memory()
    if mem is not None:
        n = min(n, max(1, (mem - XZ_BASE_BYTES) // XZ_THREAD_BYTES))
    return n


@contextmanager
def compressor(out: BinaryIO, kind: str, level: int | None = None, threads: int | None = None) -> Iterator[BinaryIO]:
    """A writable stream that compresses into `out`; the frame is finished on exit.
    `threads`: zstd's workers (default none: see engine/backup.py), xz's (default: one per
    core, as `xz -T0`)."""
    check(kind)
    if kind == "none":
        yield out
        return
    sink = _NoClose(out)
    if kind == "xz":
        w = _ParallelXZ(sink, 6 if level is None else level, threads or xz_threads())
        try:
            yield w
            w.finish()
        finally:
            w.close()
        return
    if kind == "zstd":
        # one worker thread compresses beside the dump's own work (the GIL-free part of it);
        # 1 MiB jobs keep its buffers small (the default, 8 MiB at level 3, cost ~25 MiB RSS)
        params = zstandard.ZstdCompressionParameters.from_level(
            level or 3, threads=threads or 0, job_size=(1 << 20) if threads else 0, write_checksum=True)
        cctx = zstandard.ZstdCompressor(compression_params=params)
        w = cctx.stream_writer(sink, closefd=False)
    else:
        w = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6 if level is None else level, mtime=0)
    with w:
        yield w


def detect(head: bytes) -> str:
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return "none"


class _Peeked(io.RawIOBase):
    """A stream with some already-read bytes put back in front."""

    def __init__(self, head: bytes, raw: BinaryIO):
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(b))
        if not data:
            return 0
        b[:len(data)] = data
        return len(data)


class CorruptCompressedData(IntegrityError):
    """The compressed stream is corrupt or truncated (any codec): an integrity error (exit 5)."""


# what each decoder raises for bytes that are not what its encoder wrote: a bad frame, a
# failed check (zstd's content checksum, xz's CRC64, gzip's CRC32 and length), or the end of
# the stream before the end of the data (EOFError)
_DECODER_ERRORS = (zstandard.ZstdError, lzma.LZMAError, gzip.BadGzipFile, zlib.error, EOFError)


class _Guarded(io.RawIOBase):
    """A decoder's output, its errors raised as CorruptCompressedData (they would otherwise
    reach the user as 'unexpected LZMAError', exit 1)."""

    def __init__(self, kind: str, decoder: BinaryIO):
        self._kind, self._decoder = kind, decoder

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            return self._decoder.readinto(b)
        except _DECODER_ERRORS as exc:
            raise CorruptCompressedData(f"{self._kind} data is corrupt or truncated "
                                        f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None

    def close(self) -> None:
        with contextlib.suppress(*_DECODER_ERRORS):
            self._decoder.close()
        super().close()


def decompressor(inp: BinaryIO) -> tuple[str, BinaryIO]:
    """Detect the compression of `inp` and return (kind, a readable plain stream). Corrupt or
    truncated compressed data is raised as CorruptCompressedData when it is read."""
    head = inp.read(6)
    kind = detect(head)
    raw = io.BufferedReader(_Peeked(head, inp), buffer_size=_READ_CHUNK)
    if kind == "zstd":
        decoder = zstandard.ZstdDecompressor().stream_reader(raw, read_size=_READ_CHUNK, read_across_frames=True)
    elif kind == "xz":
        decoder = lzma.LZMAFile(raw, "rb")
    elif kind == "gzip":
        decoder = gzip.GzipFile(fileobj=raw, mode="rb")
    else:
        return kind, raw
    return kind, io.BufferedReader(_Guarded(kind, decoder), buffer_size=_READ_CHUNK)
