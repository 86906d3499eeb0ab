"""Streamed compression of the archive: zstd (default), xz, gzip or none.

Readers detect the format from the stream's first bytes, so an archive from
`mongodump --archive | xz` restores without being told how it was packed.
"""

from __future__ import annotations

import gzip
import io
import lzma
from contextlib import contextmanager
from typing import BinaryIO, Iterator

import zstandard

from ..errors import UsageError

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


@contextmanager
def compressor(out: BinaryIO, kind: str, level: int | None = None, threads: int = 0) -> Iterator[BinaryIO]:
    """A writable stream that compresses into `out`; the frame is finished on exit."""
    check(kind)
    if kind == "none":
        yield out
        return
    sink = _NoClose(out)
    if kind == "zstd":
        cctx = zstandard.ZstdCompressor(level=level or 3, threads=threads, write_checksum=True)
        w = cctx.stream_writer(sink, closefd=False)
    elif kind == "xz":
        w = lzma.LZMAFile(sink, "wb", preset=6 if level is None else level)
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


def decompressor(inp: BinaryIO) -> tuple[str, BinaryIO]:
    """Detect the compression of `inp` and return (kind, a readable plain stream)."""
    head = inp.read(6)
    kind = detect(head)
    raw = io.BufferedReader(_Peeked(head, inp), buffer_size=_READ_CHUNK)
    if kind == "zstd":
        r = zstandard.ZstdDecompressor().stream_reader(raw, read_size=_READ_CHUNK, read_across_frames=True)
        return kind, io.BufferedReader(r, buffer_size=_READ_CHUNK)
    if kind == "xz":
        return kind, io.BufferedReader(lzma.LZMAFile(raw, "rb"), buffer_size=_READ_CHUNK)
    if kind == "gzip":
        return kind, io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=_READ_CHUNK)
    return kind, raw
