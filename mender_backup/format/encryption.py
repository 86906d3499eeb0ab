"""Client-side encryption of what a backup writes: a streamed, authenticated format
(docs/FORMAT.md, "Encryption"), byte by byte:

    header   magic "MBENC1" | algorithm 0x01 | log2(segment size) | key id (16) | salt (32)
    segments AES-256-GCM(file key, nonce = counter (11 bytes, big-endian) || final flag,
                         plaintext segment, associated data = header || context) || tag (16)

The file key is HKDF-SHA256(master key, salt, "mender-backup/v1 file key"): a fresh
random salt per object, so a nonce is never reused under a key. Every segment but
the last holds exactly `segment size` bytes of plaintext; the last one is sealed
with the final flag, so truncation, reordering, removal or a flipped bit anywhere
fail authentication. `context` binds an object to its role and backup ("archive:<id>"),
so one backup's ciphertext cannot be passed off as another object.

Memory stays flat: one segment (1 MiB by default) is held at a time. Nothing here
reads the environment or files: keys are handed in (engine/keys.py finds them).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from ..errors import EncryptionKeyError, IntegrityError, UsageError

MAGIC = b"MBENC1"
ALGORITHM_ID = 1
ALGORITHM = "aes-256-gcm-stream"          # the manifest's name for ALGORITHM_ID
KEY_BYTES = 32
KEY_ID_BYTES = 16
SALT_BYTES = 32
TAG_BYTES = 16
HEADER = struct.Struct(f">{len(MAGIC)}sBB{KEY_ID_BYTES}s{SALT_BYTES}s")   # 56 bytes
DEFAULT_LOG2_SEGMENT = 20                 # 1 MiB of plaintext per segment
MIN_LOG2_SEGMENT, MAX_LOG2_SEGMENT = 12, 24
EXTENSION = ".enc"

_FILE_KEY_INFO = b"mender-backup/v1 file key"
_FINGERPRINT_INFO = b"mender-backup/v1 key fingerprint"


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


class Key:
    """A 32-byte master key. Its repr and str never show the material."""

    __slots__ = ("_material", "fingerprint")

    def __init__(self, material: bytes):
        if len(material) != KEY_BYTES:
            raise UsageError(f"an encryption key must be {KEY_BYTES} bytes, not {len(material)}")
        self._material = material
        #: what manifests and headers record: HKDF of the key, never the key itself
        self.fingerprint = _hkdf(material, b"", _FINGERPRINT_INFO, KEY_ID_BYTES).hex()

    @classmethod
    def from_base64(cls, text: str, where: str) -> "Key":
        """A key as operators store it (`head -c 32 /dev/urandom | base64`). The error
        names `where` it came from, never the value."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"{where}: not a base64-encoded key (make one with "
                             f"`head -c 32 /dev/urandom | base64`)") from None
        if len(raw) != KEY_BYTES:
            raise UsageError(f"{where}: a key is {KEY_BYTES} random bytes, base64-encoded; this one "
                             f"decodes to {len(raw)} bytes")
        return cls(raw)

    @classmethod
    def generate(cls) -> "Key":
        return cls(os.urandom(KEY_BYTES))

    def to_base64(self) -> str:
        return base64.b64encode(self._material).decode()

    def file_key(self, salt: bytes) -> bytes:
        return _hkdf(self._material, salt, _FILE_KEY_INFO, KEY_BYTES)

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint})"

    __str__ = __repr__


@dataclass
class Keyring:
    """The keys an operator gave: the first encrypts new backups, all of them are
    tried (by fingerprint) to read old ones. Empty: no encryption."""
    keys: list[Key]

    @property
    def current(self) -> Key | None:
        return self.keys[0] if self.keys else None

    @property
    def fingerprints(self) -> list[str]:
        return [k.fingerprint for k in self.keys]

    def find(self, fingerprint: str) -> Key | None:
        return next((k for k in self.keys if k.fingerprint == fingerprint), None)

    def require(self, fingerprint: str, what: str) -> Key:
        """The key `what` was encrypted with, or one line (exit 6) saying which key it needs."""
        key = self.find(fingerprint)
        if key is not None:
            return key
        if not self.keys:
            raise EncryptionKeyError(f"{what} is encrypted with key {fingerprint}: no key given (set "
                                     f"MENDER_BACKUP_ENCRYPTION_KEY or MENDER_BACKUP_ENCRYPTION_KEY_FILE)")
        raise EncryptionKeyError(f"{what} is encrypted with key {fingerprint}, not with the key(s) given "
                                 f"({', '.join(self.fingerprints)}): wrong key")


@dataclass(frozen=True)
class Header:
    key_id: str           # hex fingerprint of the master key
    salt: bytes
    log2_segment: int = DEFAULT_LOG2_SEGMENT

    @property
    def segment_size(self) -> int:
        return 1 << self.log2_segment

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, ALGORITHM_ID, self.log2_segment, bytes.fromhex(self.key_id), self.salt)

    @classmethod
    def unpack(cls, raw: bytes, what: str) -> "Header":
        if len(raw) < HEADER.size or not raw.startswith(MAGIC):
            raise IntegrityError(f"{what}: not an encrypted mender-backup object (no {MAGIC.decode()} header)")
        magic, alg, log2, key_id, salt = HEADER.unpack(raw[:HEADER.size])
        if alg != ALGORITHM_ID:
            raise IntegrityError(f"{what}: unknown encryption algorithm {alg} (this version knows {ALGORITHM_ID})")
        if not MIN_LOG2_SEGMENT <= log2 <= MAX_LOG2_SEGMENT:
            raise IntegrityError(f"{what}: corrupt encryption header (segment size 2^{log2})")
        return cls(key_id.hex(), salt, log2)


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class _Sealer(io.RawIOBase):
    """Writable: buffers one segment, seals it when the next byte arrives (so the last
    segment, sealed on `finish`, is known to be last)."""

    def __init__(self, out: BinaryIO, key: Key, context: bytes, log2_segment: int):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._out = out
        header = Header(key.fingerprint, os.urandom(SALT_BYTES), log2_segment)
        self._aad = header.pack() + context
        self._aead = AESGCM(key.file_key(header.salt))
        self._size = header.segment_size
        self._buf = bytearray()
        self._counter = 0
        out.write(header.pack())

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._buf += b
        while len(self._buf) > self._size:
            self._seal(bytes(self._buf[:self._size]), final=False)
            del self._buf[:self._size]
        return len(b)

    def _seal(self, data: bytes, final: bool) -> None:
        self._out.write(self._aead.encrypt(_nonce(self._counter, final), data, self._aad))
        self._counter += 1

    def finish(self) -> None:
        self._seal(bytes(self._buf), final=True)
        self._buf.clear()


@contextlib.contextmanager
def encryptor(out: BinaryIO, key: Key, context: str,
              log2_segment: int = DEFAULT_LOG2_SEGMENT) -> Iterator[BinaryIO]:
    """A writable stream that encrypts into `out`; the final segment is sealed on a
    clean exit only (an object left without it fails authentication when read)."""
    s = _Sealer(out, key, context.encode(), log2_segment)
    yield s
    s.finish()


class _Opener(io.RawIOBase):
    """Readable plaintext of an encrypted stream; every segment is authenticated before
    a byte of it is returned."""

    def __init__(self, inp: BinaryIO, header: Header, key: Key, context: bytes, what: str):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._in = inp
        self._aad = header.pack() + context
        self._aead = AESGCM(key.file_key(header.salt))
        self._chunk = header.segment_size + TAG_BYTES
        self._what = what
        self._plain = b""
        self._pos = 0
        self._counter = 0
        self._ahead = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _read_full(self, n: int) -> bytes:
        parts, have = [self._ahead], len(self._ahead)
        self._ahead = b""
        while have < n:
            data = self._in.read(n - have)
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def _next_segment(self) -> None:
        from cryptography.exceptions import InvalidTag
        chunk = self._read_full(self._chunk)
        final = len(chunk) < self._chunk
        if not final:
            self._ahead = self._in.read(1)
            final = not self._ahead
        if len(chunk) < TAG_BYTES:
            raise IntegrityError(f"{self._what}: encrypted data truncated (segment {self._counter} incomplete)")
        try:
            self._plain = self._aead.decrypt(_nonce(self._counter, final), chunk, self._aad)
        except InvalidTag:
            raise IntegrityError(f"{self._what}: authentication failed at segment {self._counter}: the "
                                 f"encrypted data is corrupt, truncated or reordered") from None
        self._pos = 0
        self._counter += 1
        self._done = final

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._in.close()
        super().close()

    def readinto(self, b) -> int:
        while self._pos >= len(self._plain):
            if self._done:
                return 0
            self._next_segment()
        n = min(len(b), len(self._plain) - self._pos)
        b[:n] = self._plain[self._pos:self._pos + n]
        self._pos += n
        return n


def read_header(inp: BinaryIO, what: str) -> Header:
    raw = inp.read(HEADER.size)
    return Header.unpack(raw or b"", what)


def decryptor(inp: BinaryIO, keyring: Keyring, context: str, what: str,
              expected_key: str | None = None) -> BinaryIO:
    """The plaintext of an encrypted stream. The header's key id must be the one the
    manifest recorded (`expected_key`) and a key of the keyring: else one line, exit 6
    for a key we do not have, exit 5 for a header that contradicts the manifest."""
    header = read_header(inp, what)
    if expected_key is not None and header.key_id != expected_key:
        raise IntegrityError(f"{what}: encryption header names key {header.key_id}, the manifest {expected_key}")
    key = keyring.require(header.key_id, what)
    return io.BufferedReader(_Opener(inp, header, key, context.encode(), what), buffer_size=1 << 20)


def overhead(plain_size: int, log2_segment: int = DEFAULT_LOG2_SEGMENT) -> int:
    """Bytes an encrypted object has more than its plaintext."""
    segments = max(1, -(-plain_size // (1 << log2_segment)))
    return HEADER.size + segments * TAG_BYTES
