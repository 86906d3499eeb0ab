"""format/encryption.py, the streamed AEAD of docs/FORMAT.md "Encryption": round trips of
any size, and every way the ciphertext can be damaged (a flipped bit anywhere, truncation
at or inside a segment, reordered, removed or appended segments, another object's
context, another key) fails authentication instead of returning bytes."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mender_backup.errors import EncryptionKeyError, IntegrityError, UsageError
from mender_backup.format import encryption as enc

KEY = enc.Key(bytes(range(32)))
OTHER = enc.Key(bytes(range(1, 33)))
SMALL = 12                      # 4 KiB segments: many segments from little data
SEG = 1 << SMALL


def seal(plain: bytes, key: enc.Key = KEY, context: str = "archive:x", log2: int = SMALL) -> bytes:
    out = io.BytesIO()
    with enc.encryptor(out, key, context, log2) as w:
        for i in range(0, len(plain), 1000):       # writes that do not align with segments
            w.write(plain[i:i + 1000])
    return out.getvalue()


def open_(blob: bytes, keys=(KEY,), context: str = "archive:x", expected: str | None = None) -> bytes:
    r = enc.decryptor(io.BytesIO(blob), enc.Keyring(list(keys)), context, "test object", expected)
    return r.read()


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=5 * SEG + 7) | st.sampled_from([b"", b"x" * SEG, b"y" * (2 * SEG)]))
def test_round_trip_any_size(plain):
    blob = seal(plain)
    assert open_(blob) == plain
    assert len(blob) == len(plain) + enc.overhead(len(plain), SMALL)


def test_ciphertext_shows_nothing_of_the_plaintext_and_differs_each_time():
    plain = b"deviceauth auth_sets id_data_sha256 " * 500
    a, b = seal(plain), seal(plain)
    assert a != b                                           # a fresh salt per object
    assert b"deviceauth" not in a and b"id_data" not in a
    assert a[:6] == b"MBENC1" and enc.Header.unpack(a, "t").key_id == KEY.fingerprint


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_bit_is_caught(data):
    plain = bytes(range(256)) * 40                          # 10 KiB: 3 segments
    blob = bytearray(seal(plain))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises((IntegrityError, EncryptionKeyError)):
        open_(bytes(blob))


def _segments(blob: bytes) -> tuple[bytes, list[bytes]]:
    head, body = blob[:enc.HEADER.size], blob[enc.HEADER.size:]
    n = SEG + enc.TAG_BYTES
    return head, [body[i:i + n] for i in range(0, len(body), n)]


@pytest.mark.parametrize("damage", [
    "truncated at a segment boundary", "truncated inside a segment", "last segment dropped",
    "segments swapped", "segment repeated", "bytes appended", "header only"])
def test_truncation_reordering_and_extension_are_caught(damage):
    blob = seal(b"".join(bytes([i]) * SEG for i in range(3)) + b"tail")    # 4 segments
    head, segs = _segments(blob)
    bad = {
        "truncated at a segment boundary": head + b"".join(segs[:2]),
        "truncated inside a segment": blob[:-5],
        "last segment dropped": head + b"".join(segs[:-1]),
        "segments swapped": head + segs[1] + segs[0] + b"".join(segs[2:]),
        "segment repeated": head + segs[0] + b"".join(segs),
        "bytes appended": blob + b"\x00" * 16,
        "header only": head,
    }[damage]
    with pytest.raises(IntegrityError):
        open_(bad)


def test_another_objects_context_is_refused():
    """The archive of one backup cannot be passed off as another's, nor as a secrets bundle."""
    blob = seal(b"data" * 100, context="archive:20260101T000000Z-aaaaaa")
    with pytest.raises(IntegrityError, match="authentication failed"):
        open_(blob, context="archive:20260101T000000Z-bbbbbb")
    with pytest.raises(IntegrityError):
        open_(blob, context="secrets:20260101T000000Z-aaaaaa")


def test_keys_are_found_by_fingerprint_and_a_missing_one_is_named():
    blob = seal(b"old backup", key=OTHER)
    assert open_(blob, keys=(KEY, OTHER)) == b"old backup"      # rotation: old key still reads
    with pytest.raises(EncryptionKeyError, match=f"encrypted with key {OTHER.fingerprint}.*wrong key"):
        open_(blob, keys=(KEY,))
    with pytest.raises(EncryptionKeyError, match="no key given"):
        open_(blob, keys=())
    with pytest.raises(IntegrityError, match="the manifest"):
        open_(blob, keys=(OTHER,), expected=KEY.fingerprint)


def test_key_parsing_never_shows_the_value():
    good = KEY.to_base64()
    assert enc.Key.from_base64(good + "\n", "env").fingerprint == KEY.fingerprint
    for bad in ("not base64 at all!", "c2hvcnQ=", good[:-4]):
        with pytest.raises(UsageError) as exc:
            enc.Key.from_base64(bad, "MENDER_BACKUP_ENCRYPTION_KEY")
        assert bad not in str(exc.value) and "MENDER_BACKUP_ENCRYPTION_KEY" in str(exc.value)
    assert good not in repr(KEY) and good not in str(KEY)
    assert len(KEY.fingerprint) == 32 and KEY.fingerprint != OTHER.fingerprint


def test_the_header_is_checked():
    blob = bytearray(seal(b"x"))
    for pos, value, message in ((0, ord("X"), "not an encrypted"), (6, 9, "unknown encryption algorithm"),
                                (7, 40, "segment size")):
        bad = bytearray(blob)
        bad[pos] = value
        with pytest.raises(IntegrityError, match=message):
            open_(bytes(bad))


def test_memory_stays_flat_while_streaming():
    """Sealing 64 MiB holds one segment at a time, not the stream."""
    import tracemalloc
    sink = type("Sink", (), {"write": lambda self, b: len(b)})()
    tracemalloc.start()
    with enc.encryptor(sink, KEY, "archive:x") as w:
        chunk = b"\x00" * (1 << 20)
        for _ in range(64):
            w.write(chunk)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, peak
