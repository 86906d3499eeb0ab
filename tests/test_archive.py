"""The mongodump archive format, at the byte level (no server needed)."""

from __future__ import annotations

import io
import struct

import bson
import pytest
from bson.decimal128 import Decimal128
from hypothesis import given, settings
from hypothesis import strategies as st

from mender_backup.format import compression
from mender_backup.format.archive import (MAGIC, TERMINATOR, ArchiveError, ArchiveReader, CollectionMetadata,
                            Header, crc_update)
from mender_backup.format.archive_writer import ArchiveWriter


def crc64_go_ecma(data: bytes) -> int:
    """Go's hash/crc64 with crc64.ECMA, written out bit by bit from its definition,
    independent of the library the archive code uses."""
    poly = 0xC96C5795D7870F42        # ECMA-182, reversed, as Go's MakeTable(ECMA) uses it
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFFFFFFFFFF


def docs(n: int, start: int = 0) -> bytes:
    return b"".join(bson.encode({"_id": i, "v": "x" * (i % 7), "d": Decimal128("1.25")}) for i in range(start, start + n))


def test_crc_is_gos_crc64_ecma():
    data = docs(20)
    assert crc_update(None, data) == crc64_go_ecma(data)
    assert crc_update(crc_update(None, data[:100]), data[100:]) == crc64_go_ecma(data)


def write_archive(segments: list[tuple[str, str, bytes]], colls=("db.a", "db.b")) -> bytes:
    out = io.BytesIO()
    w = ArchiveWriter(out)
    metas = [CollectionMetadata(*ns.split("."), metadata='{"indexes":[]}') for ns in colls]
    w.write_prelude(Header(server_version="7.0.0", tool_version="t"), metas)
    for db, c, data in segments:
        w.write_segment(db, c, data)
    for ns in colls:
        w.end_collection(*ns.split("."))
    return out.getvalue()


def parse_by_spec(raw: bytes) -> dict:
    """A second, minimal reader written from spec.md, to check our writer's bytes."""
    assert raw[:4] == bytes.fromhex("6de29981")
    pos = 4

    def doc():
        nonlocal pos
        (n,) = struct.unpack_from("<i", raw, pos)
        d = bson.decode(raw[pos:pos + n])
        pos += n
        return d

    header = doc()
    metas = []
    while raw[pos:pos + 4] != b"\xff\xff\xff\xff":
        metas.append(doc())
    pos += 4
    data: dict[str, bytes] = {}
    crcs = {}
    while pos < len(raw):
        h = doc()
        ns = f"{h['db']}.{h['collection']}"
        if h["EOF"]:
            crcs[ns] = h["CRC"] & 0xFFFFFFFFFFFFFFFF
            assert raw[pos:pos + 4] == b"\xff\xff\xff\xff"
            pos += 4
            continue
        while raw[pos:pos + 4] != b"\xff\xff\xff\xff":
            (n,) = struct.unpack_from("<i", raw, pos)
            data[ns] = data.get(ns, b"") + raw[pos:pos + n]
            pos += n
        pos += 4
    return {"header": header, "metas": metas, "data": data, "crcs": crcs}


def test_writer_output_follows_the_spec():
    a1, b1, a2 = docs(5), docs(3, 100), docs(4, 5)
    raw = write_archive([("db", "a", a1), ("db", "b", b1), ("db", "a", a2)])
    p = parse_by_spec(raw)
    assert p["header"] == {"concurrent_collections": 1, "version": "0.1", "server_version": "7.0.0",
                           "tool_version": "t"}
    assert [(m["db"], m["collection"], m["type"]) for m in p["metas"]] == [("db", "a", "collection"),
                                                                            ("db", "b", "collection")]
    assert p["data"] == {"db.a": a1 + a2, "db.b": b1}
    assert p["crcs"] == {"db.a": crc64_go_ecma(a1 + a2), "db.b": crc64_go_ecma(b1)}


def test_reader_round_trip_with_interleaving_and_empty_collection():
    a1, b1, a2 = docs(5), docs(3, 100), docs(4, 5)
    raw = write_archive([("db", "a", a1), ("db", "b", b1), ("db", "a", a2)], colls=("db.a", "db.b", "db.empty"))
    r = ArchiveReader(io.BytesIO(raw))
    assert r.prelude.header.server_version == "7.0.0"
    got: dict = {}
    for seg in r.segments(max_bytes=64):
        got.setdefault(seg.collection, []).append(seg.data)
    assert b"".join(got["a"]) == a1 + a2 and b"".join(got["b"]) == b1
    assert "empty" not in got and ("db", "empty") in r.eof


@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip", "none"])
def test_compression_round_trip_and_detection(kind):
    raw = write_archive([("db", "a", docs(50))])
    out = io.BytesIO()
    with compression.compressor(out, kind) as z:
        z.write(raw)
    packed = out.getvalue()
    detected, plain = compression.decompressor(io.BytesIO(packed))
    assert detected == kind
    assert plain.read() == raw


def test_truncated_archive_is_an_error():
    raw = write_archive([("db", "a", docs(20))])
    for cut in (3, 10, len(raw) // 2, len(raw) - 3):
        with pytest.raises(ArchiveError):
            r = ArchiveReader(io.BytesIO(raw[:cut]))
            list(r.segments())


def test_missing_eof_is_an_error():
    raw = write_archive([("db", "a", docs(20))], colls=("db.a",))
    eof = bson.encode({"db": "db", "collection": "a", "EOF": True, "CRC": bson.int64.Int64(0)})
    cut = raw.rindex(eof[:20])
    with pytest.raises(ArchiveError, match="ends before the end of db.a"):
        list(ArchiveReader(io.BytesIO(raw[:cut])).segments())


def test_bit_flip_in_a_document_fails_the_crc():
    raw = bytearray(write_archive([("db", "a", docs(20))], colls=("db.a",)))
    i = raw.index(b"xxxx")
    raw[i] ^= 0x01
    with pytest.raises(ArchiveError, match="CRC mismatch"):
        list(ArchiveReader(io.BytesIO(bytes(raw))).segments())


def test_not_an_archive():
    with pytest.raises(ArchiveError, match="not a mongodump archive"):
        ArchiveReader(io.BytesIO(b"hello world, not an archive"))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=300))
def test_fuzz_reader_raises_only_archive_errors(noise, at):
    """Garbage, or a valid archive with garbage spliced in: only ArchiveError, never a crash."""
    valid = write_archive([("db", "a", docs(3))], colls=("db.a",))
    for data in (noise, MAGIC + noise, valid[:at] + noise + valid[at:], valid[:at] + noise):
        try:
            r = ArchiveReader(io.BytesIO(data))
            for _ in r.segments():
                pass
        except ArchiveError:
            pass


def test_prelude_ends_only_at_the_spec_terminator():
    """spec.md: the metadata list ends with 0xFFFFFFFF. Any other 4 bytes there are read as
    the length of a next document, and a wrong one is an error, not a silent end."""
    raw = write_archive([("db", "a", docs(2))], colls=("db.a",))
    end = raw.index(TERMINATOR)      # the first terminator closes the prelude
    assert len(ArchiveReader(io.BytesIO(raw)).prelude.collections) == 1
    broken = raw[:end] + b"\xfe\xff\xff\xff" + raw[end + 4:]
    with pytest.raises(ArchiveError, match="invalid BSON length"):
        ArchiveReader(io.BytesIO(broken))


def test_reader_marks_each_namespace_end_when_asked():
    a1, b1, a2 = docs(5), docs(3, 100), docs(4, 5)
    raw = write_archive([("db", "a", a1), ("db", "b", b1), ("db", "a", a2)], colls=("db.a", "db.b", "db.empty"))
    got = [(s.collection, s.end, s.count) for s in ArchiveReader(io.BytesIO(raw)).segments(max_bytes=64, ends=True)]
    ends = [c for c, end, _ in got if end]
    assert sorted(ends) == ["a", "b", "empty"]
    # every namespace's documents come before its end
    for c in ends:
        last_data = max((i for i, (cc, end, _) in enumerate(got) if cc == c and not end), default=-1)
        assert last_data < got.index((c, True, 0))
    assert sum(n for c, end, n in got if c == "a") == 9


def test_xz_is_written_in_blocks_in_parallel_and_reads_back_whole():
    """xz as `xz -T0` writes it: blocks of 3 x the dictionary, each a complete .xz stream;
    our reader and the xz tool read the concatenation whole."""
    import lzma
    import random
    data = random.Random(1).randbytes(1 << 20) * 3            # 3 MiB: 4 blocks at preset 0 (768 KiB)
    out = io.BytesIO()
    with compression.compressor(out, "xz", level=0, threads=2) as z:
        for i in range(0, len(data), 100_000):
            z.write(data[i:i + 100_000])
    packed = out.getvalue()
    assert packed.count(b"\xfd7zXZ\x00") == 4
    assert lzma.decompress(packed) == data
    kind, plain = compression.decompressor(io.BytesIO(packed))
    assert kind == "xz" and plain.read() == data
