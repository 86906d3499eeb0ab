"""Hostile and corrupt input is never trusted: mutated archives (bit flips, truncations) of
every compression, and hostile manifests, end a restore (and a verify) in one error line,
exit 5 (or 2), with nothing written to the target, no traceback and no hang.

The mutations are seeded: the seed is printed (and named in every failure); rerun one with
MENDER_BACKUP_FUZZ_SEED=<seed>. A bit flip in the archive is caught by its sha256 before
anything is decompressed, so most mutations are also run "forged": with the manifest's
sha256 and size updated to match, so the decoder and the archive parser see the corrupt
bytes. A forged mutation may leave the data intact (a flip in bits the decoder ignores, in
the archive header's tool_version, the last byte of zstd's checksum): then the restore
succeeds and has verified every count and digest against the manifest; else it must fail,
before its first write."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
from pathlib import Path

import bson
import pytest

from mender_backup.errors import IntegrityError
from tests.cli import assert_one_line_error, result_of, run

DB = "fuzz_hostile"
CODECS = ["zstd", "xz", "gzip", "none"]
EXT = {"zstd": ".zst", "xz": ".xz", "gzip": ".gz", "none": ""}
SEED = int(os.environ.get("MENDER_BACKUP_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
CALL_TIMEOUT = 60       # seconds: a hang is a failure, not a stuck suite
# per compression: (flips, truncations) as stored, then (flips, truncations) forged
# 4 x 31 = 124 through the CLI, each a process (~1 s); the seed changes every run, and the
# in-process test below takes many more
PLAIN_FLIPS, PLAIN_CUTS, FORGED_FLIPS, FORGED_CUTS = 5, 5, 11, 10


def _seed(client) -> None:
    db = client[DB]
    db.devices.insert_many([{"_id": f"dev-{i}", "status": ["accepted", "pending"][i % 2], "n": i,
                             "attrs": [{"name": "mac", "value": f"00:11:22:33:{i:02x}"}]} for i in range(60)])
    db.devices.create_index("status")
    db.deployments.insert_many([{"_id": i, "name": f"release {i}", "log": "installing update " * 3}
                                for i in range(40)])
    db.create_collection("empty")


@pytest.fixture(scope="module")
def backups(tmp_path_factory, mongodb) -> dict:
    """One small real backup per compression, then the source database dropped: the
    suite's server is the restores' target, and DB must stay without collections."""
    client = mongodb.client()
    client.drop_database(DB)
    _seed(client)
    made = {}
    try:
        for codec in CODECS:
            dest = tmp_path_factory.mktemp(f"fuzz-{codec}")
            bid = result_of(run("backup", "--db", DB, "--compression", codec, "--json",
                                env={"MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}"}))["id"]
            folder = dest / "backups" / bid
            made[codec] = {"dest": dest, "id": bid, "manifest": (folder / "manifest.json").read_bytes(),
                           "archive": (folder / f"mongodb.archive{EXT[codec]}").read_bytes()}
    finally:
        client.drop_database(DB)
    print(f"fuzz seed {SEED} (MENDER_BACKUP_FUZZ_SEED); archives: "
          + ", ".join(f"{c} {len(b['archive'])} bytes" for c, b in made.items()))
    return made


@pytest.fixture
def cases(tmp_path):
    """Where a test's cases are written; emptied after it (the session's manifest audit must
    not read the hostile manifests as backups of ours)."""
    yield tmp_path
    shutil.rmtree(tmp_path / "dest", ignore_errors=True)


class Case:
    """A copy of one backup with its archive and/or manifest replaced."""

    def __init__(self, root: Path, backup: dict, codec: str):
        self.dest = root / "dest"
        if self.dest.exists():
            shutil.rmtree(self.dest)
        self.folder = self.dest / "backups" / backup["id"]
        self.folder.mkdir(parents=True)
        self.id, self.codec = backup["id"], codec
        self.archive_path = self.folder / f"mongodb.archive{EXT[codec]}"

    def write(self, archive: bytes, manifest: bytes) -> "Case":
        self.archive_path.write_bytes(archive)
        (self.folder / "manifest.json").write_bytes(manifest)
        return self


def forged(manifest: bytes, archive: bytes) -> bytes:
    """The manifest with the archive's sha256 and size made to match `archive`."""
    m = json.loads(manifest)
    m["archive"].update(sha256=hashlib.sha256(archive).hexdigest(), size=len(archive))
    return json.dumps(m, indent=2).encode()


def _target_untouched(client) -> bool:
    return DB not in client.list_database_names() and client[DB].list_collection_names() == []


def check_refused(mongodb, case: Case, what: str, verify: bool = False, fragment: str = "") -> None:
    env = {"MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"file://{case.dest}"}
    label = f"{what} (seed {SEED})"
    r = run("restore", case.id, "--quiet", env=env, check=False, timeout=CALL_TIMEOUT)
    assert r.returncode in (2, 5), f"{label}: restore exit {r.returncode}\n{r.stderr[-2000:]}"
    line = assert_one_line_error(r, r.returncode)
    assert fragment in line, f"{label}: {line}"
    assert _target_untouched(mongodb.client()), f"{label}: the restore wrote to the target: {line}"
    if verify:
        r = run("verify", case.id, "--deep", "--quiet", env=env, check=False, timeout=CALL_TIMEOUT)
        assert r.returncode in (2, 5), f"{label}: verify exit {r.returncode}\n{r.stderr[-2000:]}"
        assert_one_line_error(r, r.returncode)


def check_forged(mongodb, case: Case, what: str, verify: bool) -> str:
    """A forged mutation: refused before the first write, or (the data intact after all)
    restored and verified. Returns "refused" or "restored"."""
    env = {"MONGODB_URL": mongodb.url, "MENDER_BACKUP_DESTINATION": f"file://{case.dest}"}
    label = f"{what} (seed {SEED})"
    r = run("restore", case.id, "--json", env=env, check=False, timeout=CALL_TIMEOUT)
    client = mongodb.client()
    try:
        if r.returncode == 0:
            assert result_of(r)["verified"] is True, label
            assert client[DB].devices.count_documents({}) == 60 and client[DB].deployments.count_documents({}) == 40
            if verify:
                run("verify", case.id, "--deep", "--quiet", env=env, timeout=CALL_TIMEOUT)
            return "restored"
        assert r.returncode in (2, 5), f"{label}: restore exit {r.returncode}\n{r.stderr[-2000:]}"
        line = assert_one_line_error(r, r.returncode)
        assert _target_untouched(client), f"{label}: the restore wrote to the target before failing: {line}"
        if verify:
            v = run("verify", case.id, "--deep", "--quiet", env=env, check=False, timeout=CALL_TIMEOUT)
            assert v.returncode in (2, 5), \
                f"{label}: the restore refused it ({line}) but verify --deep exit {v.returncode}\n{v.stderr[-2000:]}"
            assert_one_line_error(v, v.returncode)
        return "refused"
    finally:
        client.drop_database(DB)


def flip(rnd: random.Random, data: bytes) -> tuple[bytes, str]:
    out = bytearray(data)
    i, bit = rnd.randrange(len(out)), rnd.randrange(8)
    out[i] ^= 1 << bit
    return bytes(out), f"bit {bit} of byte {i} flipped"


def cut(rnd: random.Random, data: bytes) -> tuple[bytes, str]:
    n = rnd.randrange(len(data))
    return data[:n], f"truncated to {n} of {len(data)} bytes"


@pytest.mark.parametrize("codec", CODECS)
def test_mutated_archives_are_refused_before_the_target_is_touched(backups, mongodb, cases, codec):
    b = backups[codec]
    rnd = random.Random(f"{SEED}-{codec}")
    outcomes = {"refused": 0, "restored": 0}
    n = 0
    for mutate, count in ((flip, PLAIN_FLIPS), (cut, PLAIN_CUTS)):
        for _ in range(count):
            data, how = mutate(rnd, b["archive"])
            case = Case(cases, b, codec).write(data, b["manifest"])
            check_refused(mongodb, case, f"{codec} archive {how}", verify=n % 8 == 0)
            n += 1
    for mutate, count in ((flip, FORGED_FLIPS), (cut, FORGED_CUTS)):
        for _ in range(count):
            data, how = mutate(rnd, b["archive"])
            case = Case(cases, b, codec).write(data, forged(b["manifest"], data))
            outcomes[check_forged(mongodb, case, f"{codec} archive {how}, sha256 forged", verify=n % 8 == 0)] += 1
            n += 1
    print(f"{codec}: {n} mutations (seed {SEED}); forged: {outcomes}")
    # truncations cut documents: most forged mutations must be refused, not pass by luck
    assert outcomes["refused"] >= FORGED_CUTS // 2, outcomes


def _coll(m: dict, name: str) -> dict:
    return m["databases"][DB][name]


HOSTILE = {
    "negative count": (lambda m: _coll(m, "devices").update(count=-1), "databases/fuzz_hostile/devices/count"),
    "string count": (lambda m: _coll(m, "devices").update(count="60"), "databases/fuzz_hostile/devices/count"),
    "float count": (lambda m: _coll(m, "devices").update(count=60.5), "databases/fuzz_hostile/devices/count"),
    "negative archive size": (lambda m: m["archive"].update(size=-1), "archive/size"),
    "artifact key with ..": (lambda m: m.update(artifacts=[{"key": "../../etc/passwd", "size": 1}]),
                             "artifacts/0/key"),
    "absolute artifact key": (lambda m: m.update(artifacts=[{"key": "/etc/passwd", "size": 1}]), "artifacts/0/key"),
    "artifact key with NUL": (lambda m: m.update(artifacts=[{"key": "a\x00b", "size": 1}]), "artifacts/0/key"),
    "artifact key with backslash": (lambda m: m.update(artifacts=[{"key": "..\\..\\x", "size": 1}]),
                                    "artifacts/0/key"),
    "empty artifact key": (lambda m: m.update(artifacts=[{"key": "", "size": 1}]), "artifacts/0/key"),
    "archive key outside the backup": (lambda m: m["archive"].update(key="../../mongodb.archive.zst"), "archive/key"),
    "naive created_at": (lambda m: m.update(created_at="2026-11-24T03:15:00"), "created_at"),
    "archive is a string": (lambda m: m.update(archive="mongodb.archive.zst"), "archive"),
    "databases is a list": (lambda m: m.update(databases=[DB]), "databases"),
    "artifacts is an object": (lambda m: m.update(artifacts={"key": "x"}), "artifacts"),
    "format_version a string": (lambda m: m.update(format_version="1"), "format_version"),
    "no sha256": (lambda m: m["archive"].pop("sha256"), "archive"),
    "newer format version": (lambda m: m.update(format_version=99), "newer mender-backup"),
    "a listed collection absent from the archive": (
        lambda m: m["databases"][DB].update(ghost={"count": 0, "digest": "", "size": 0, "type": "collection"}),
        "fuzz_hostile.ghost: in the manifest, not in the archive"),
    "a collection of the archive not listed": (lambda m: m["databases"][DB].pop("deployments"),
                                               "fuzz_hostile.deployments: in the archive, not in the manifest"),
    "a count one too high": (lambda m: _coll(m, "devices").update(count=61), "fuzz_hostile.devices: 60 documents"),
    "another digest": (lambda m: _coll(m, "deployments").update(digest="0" * 32), "content digest differs"),
    "a collection said to be a view": (lambda m: _coll(m, "empty").update(type="view"), "fuzz_hostile.empty: a "),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_manifests_are_refused_before_the_target_is_touched(backups, mongodb, cases, name):
    b = backups["zstd"]
    breakage, fragment = HOSTILE[name]
    m = json.loads(b["manifest"])
    breakage(m)
    case = Case(cases, b, "zstd").write(b["archive"], json.dumps(m).encode())
    check_refused(mongodb, case, f"manifest: {name}", verify=True, fragment=fragment)


def test_collection_metadata_a_restore_cannot_parse_fails_verify_deep_too(backups, mongodb, cases):
    """One byte of a collection's metadata JSON changed, its sha256 forged: the restore refuses
    it, so verify --deep must not call the backup intact (found by this file's fuzzing)."""
    b = backups["none"]
    at = b["archive"].index(b'"options"')
    archive = b["archive"][:at] + b"'" + b["archive"][at + 1:]     # same length: the BSON stays whole
    case = Case(cases, b, "none").write(archive, forged(b["manifest"], archive))
    check_refused(mongodb, case, "metadata quote changed, sha256 forged", verify=True, fragment="malformed metadata")


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff\xfe", b"[" * 100000])
def test_a_manifest_that_is_not_a_json_object_is_refused(backups, mongodb, cases, raw):
    b = backups["zstd"]
    case = Case(cases, b, "zstd").write(b["archive"], raw)
    check_refused(mongodb, case, f"manifest {raw[:10]!r}", verify=True, fragment="manifest")


def _archive() -> bytes:
    from mender_backup.format.archive import CollectionMetadata, Header
    from mender_backup.format.archive_writer import ArchiveWriter
    buf = io.BytesIO()
    w = ArchiveWriter(buf)
    meta = '{"options": {}, "indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"}], "type": "collection"}'
    w.write_prelude(Header(server_version="7.0.0", tool_version="t"),
                    [CollectionMetadata("app", f"c{i}", meta) for i in range(3)])
    for i in range(3):
        w.write_segment("app", f"c{i}", b"".join(bson.encode({"_id": j, "s": "update " * (j % 7)}) for j in range(150)))
        w.end_collection("app", f"c{i}")
    return buf.getvalue()


@pytest.mark.parametrize("codec", CODECS)
def test_corrupt_compressed_data_is_an_integrity_error_whatever_the_codec(codec):
    """In process, many more mutations than the CLI runs: whatever the decoder or the
    parser meets, it is an IntegrityError (exit 5), never LZMAError, ZstdError, EOFError..."""
    from mender_backup.format import compression
    from mender_backup.format.archive import ArchiveReader
    plain = _archive()
    out = io.BytesIO()
    with compression.compressor(out, codec, threads=1) as z:
        z.write(plain)
    packed = out.getvalue()
    rnd = random.Random(f"{SEED}-offline-{codec}")
    refused = 0
    for n in range(300):
        data, how = (flip if n % 2 else cut)(rnd, packed)
        try:
            _, stream = compression.decompressor(io.BytesIO(data))
            reader = ArchiveReader(stream)
            for _ in reader.segments():
                pass
        except IntegrityError as exc:
            assert "\n" not in str(exc), (how, SEED)
            refused += 1
        except Exception as exc:      # noqa: BLE001 - the point of the test
            pytest.fail(f"{codec}, {how} (seed {SEED}): {type(exc).__name__}: {exc}")
    assert refused > 200, refused
    if codec in ("xz", "gzip"):   # zstd's stream reader ends quietly where a frame is cut: the parser says so
        with pytest.raises(IntegrityError, match="corrupt or truncated"):
            compression.decompressor(io.BytesIO(packed[: len(packed) // 2]))[1].read()


class _Quiet:
    def progress(self, *args, **kwargs):
        import contextlib

        class _P:
            def advance(self, n):
                pass
        return contextlib.nullcontext(_P())


def _planned() -> tuple[bytes, "Manifest"]:
    """An archive and the manifest our writer would give it: collections (one empty), a view,
    a time-series collection with its buckets (listed as a collection of their own)."""
    from mender_backup.format.archive import CollectionMetadata, Header
    from mender_backup.format.archive_writer import ArchiveWriter
    from mender_backup.format.digest import CollectionDigest
    from mender_backup.format.manifest import ArchiveEntry, CollectionEntry, Manifest
    buf = io.BytesIO()
    w = ArchiveWriter(buf)
    names = [("devices", "collection"), ("empty", "collection"), ("active", "view"), ("readings", "timeseries"),
             ("system.buckets.readings", "collection")]
    w.write_prelude(Header(server_version="7.0.0"), [CollectionMetadata("app", n, "{}", 0, k) for n, k in names])
    entries = {}
    for name, kind in names:
        d = CollectionDigest()
        if name in ("devices", "system.buckets.readings"):
            batch = b"".join(bson.encode({"_id": j, "in": name}) for j in range(20))
            d.update(batch)
            w.write_segment("app", name, batch)
        if kind == "collection":
            w.end_collection("app", name)
        entries[name] = CollectionEntry(d.count, d.hexdigest() if kind == "collection" else "", d.size, kind)
    m = Manifest(id="20261124T010000Z-aaaaaa", created_at="2026-11-24T01:00:00+00:00",
                 finished_at="2026-11-24T01:00:01+00:00", tool_version="t", server_version="7.0.0",
                 archive=ArchiveEntry("mongodb.archive", len(buf.getvalue()), "0" * 64, "none"),
                 databases={"app": entries})
    return buf.getvalue(), m


@pytest.mark.parametrize("change, fragment", [
    (None, None),
    (lambda m: m.databases["app"].pop("empty"), "app.empty: in the archive, not in the manifest"),
    (lambda m: m.databases["app"].pop("system.buckets.readings"), "app.readings: 20 documents in the archive, expected 0"),
    (lambda m: m.databases.update(other={}), None),         # a database without collections: nothing to hold
    (lambda m: m.databases["app"]["devices"].__setattr__("count", 21), "app.devices: 20 documents"),
    (lambda m: m.databases["app"]["active"].__setattr__("type", "collection"), "app.active: a view in the archive"),
    (lambda m: m.databases.update(gone={"x": m.databases["app"]["empty"]}), "gone.x: in the manifest, not in the archive"),
])
def test_the_plan_check_compares_the_whole_archive_with_the_manifest(change, fragment):
    from mender_backup.engine import integrity
    archive, manifest = _planned()
    if change:
        change(manifest)
    contents = integrity.scan_archive(io.BytesIO(archive), _Quiet(), "t")
    if fragment is None:
        integrity.check_plan(manifest, contents)
    else:
        with pytest.raises(IntegrityError, match="the archive does not hold what the manifest lists") as caught:
            integrity.check_plan(manifest, contents)
        assert fragment in str(caught.value)
