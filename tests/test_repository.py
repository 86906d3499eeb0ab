"""The Repository's catalog states and deletion rules, on a real folder destination (no
server needed: the backups are hand-made objects, so each state can be built exactly).
The same rules against S3 with faults: tests/test_never_lose.py."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mender_backup.engine import prune
from mender_backup.engine.catalog import COMPLETE, INCOMPLETE, UNKNOWN
from mender_backup.engine.repository import Repository
from mender_backup.engine.retention import Policy
from mender_backup.errors import MenderBackupError
from mender_backup.format import layout
from mender_backup.format.manifest import ArchiveEntry, ArtifactEntry, Manifest
from mender_backup.stores import FileStore
from tests import manifests

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def manifest(bid: str, when: datetime, artifacts: list[str] = ()) -> Manifest:
    return Manifest(id=bid, created_at=when.isoformat(), finished_at=when.isoformat(), tool_version="t",
                    server_version="7.0", archive=ArchiveEntry("mongodb.archive.zst", 1, "0" * 64, "zstd"),
                    artifacts=[ArtifactEntry(a, 1) for a in artifacts])


@pytest.fixture
def repo(tmp_path) -> Repository:
    manifests.mark_hand_made(tmp_path)
    return Repository(FileStore(tmp_path, f"file://{tmp_path}"))


def put_backup(repo: Repository, when: datetime, artifacts: list[str] = (), raw: bytes | None = None) -> str:
    bid = layout.new_id(when)
    repo.store.put_bytes(layout.backup_key(bid, "mongodb.archive.zst"), b"x")
    repo.store.put_bytes(layout.backup_key(bid, layout.MANIFEST),
                         raw if raw is not None else manifest(bid, when, artifacts).to_json())
    for a in artifacts:
        repo.store.put_bytes(layout.ARTIFACTS + a, b"a")
    return bid


def test_the_three_states(repo):
    good = put_backup(repo, NOW - timedelta(hours=3))
    damaged = put_backup(repo, NOW - timedelta(hours=2), raw=b"{ not json")
    newer = put_backup(repo, NOW - timedelta(hours=1), raw=json.dumps({"format_version": 99}).encode())
    killed = layout.new_id(NOW - timedelta(hours=5))
    repo.store.put_bytes(layout.backup_key(killed, "mongodb.archive.zst"), b"half")
    stray = "not-an-id"
    repo.store.put_bytes(layout.backup_key(stray, "x"), b"?")
    states = {e.id: e.state for e in repo.backups(NOW).entries}
    assert states == {good: COMPLETE, damaged: UNKNOWN, newer: UNKNOWN, killed: INCOMPLETE, stray: UNKNOWN}
    problems = {e.id: e.problem for e in repo.backups(NOW).entries}
    assert "newer" in problems[newer] and "kept" in problems[damaged]


def test_a_folder_named_manifest_json_is_unknown_not_a_crash(repo):
    bid = layout.new_id(NOW - timedelta(days=2))
    repo.store.put_bytes(layout.backup_key(bid, "manifest.json/inner"), b"?")
    (e,) = repo.backups(NOW).entries
    assert e.state == UNKNOWN
    # and prune keeps it: a backup it cannot read is never deleted
    r = prune.plan(repo.backups(NOW), repo.slices(), repo.stored_artifacts(), Policy(last=1), NOW, False)[0]
    assert bid in r.unknown and bid not in r.delete + r.delete_incomplete


def test_a_manifest_naming_another_backup_is_unknown(repo):
    bid = layout.new_id(NOW - timedelta(hours=1))
    other = layout.new_id(NOW - timedelta(hours=2))
    repo.store.put_bytes(layout.backup_key(bid, layout.MANIFEST), manifest(other, NOW).to_json())
    (e,) = repo.backups(NOW).entries
    assert e.state == UNKNOWN and other in e.problem


def test_unknown_backups_hold_back_every_artifact_and_are_not_counted(repo):
    old = put_backup(repo, NOW - timedelta(days=3), ["only-old"])
    put_backup(repo, NOW - timedelta(days=2), raw=b"")        # empty manifest: unknown
    new = put_backup(repo, NOW - timedelta(days=1), ["shared"])
    r, orphans, _ = prune.plan(repo.backups(NOW), repo.slices(), repo.stored_artifacts(), Policy(last=1), NOW, False)
    assert r.delete == [old] and list(r.keep) == [new]
    assert orphans == [] and "none deleted" in r.held_back      # "only-old" may be the unknown one's


def test_without_unknowns_unreferenced_artifacts_go(repo):
    old = put_backup(repo, NOW - timedelta(days=3), ["only-old", "shared"])
    put_backup(repo, NOW - timedelta(days=1), ["shared"])
    r, orphans, _ = prune.plan(repo.backups(NOW), repo.slices(), repo.stored_artifacts(), Policy(last=1), NOW, False)
    assert r.delete == [old] and orphans == ["only-old"]


def test_a_backup_dated_a_year_ahead_is_flagged_kept_and_not_counted(repo):
    future = put_backup(repo, NOW + timedelta(days=365))
    older = put_backup(repo, NOW - timedelta(days=2))
    newest = put_backup(repo, NOW - timedelta(minutes=1))
    cat = repo.backups(NOW)
    assert [e.id for e in cat.entries if e.future] == [future]
    assert cat.latest().id == newest                        # not the one a wrong clock dated
    r = prune.plan(cat, repo.slices(), {}, Policy(last=1), NOW, False)[0]
    assert r.keep == {future: ["dated in the future"], newest: ["last"]}
    assert r.delete == [older]


def test_an_incomplete_backup_is_deleted_only_once_its_manifest_is_proven_absent(repo):
    bid = layout.new_id(NOW - timedelta(days=1))
    repo.store.put_bytes(layout.backup_key(bid, "mongodb.archive.zst"), b"half")
    with repo.backups_lock("prune") as lock:
        lock.acquire()
        repo.store.put_bytes(layout.backup_key(bid, layout.MANIFEST), manifest(bid, NOW).to_json())
        assert repo.delete_incomplete(lock, bid) is False          # it has one now: kept
        assert repo.backups(NOW).entries[0].state == COMPLETE
        repo.store.delete([layout.backup_key(bid, layout.MANIFEST)])
        assert repo.delete_incomplete(lock, bid) is True
    assert repo.backups(NOW).entries == []


class FlakyStore(FileStore):
    """A real folder whose reads of chosen keys fail as a 503 past the retries would."""

    def __init__(self, root: Path, failing: set[str]):
        super().__init__(root, f"file://{root}")
        self.failing = failing

    def open_read(self, key: str):
        if key in self.failing:
            raise MenderBackupError(f"reading {key}: SlowDown: please reduce your request rate")
        return super().open_read(key)


def test_prune_deletes_nothing_when_one_manifest_cannot_be_read(tmp_path):
    manifests.mark_hand_made(tmp_path)
    ok = Repository(FileStore(tmp_path, f"file://{tmp_path}"))
    ids = [put_backup(ok, datetime.now(timezone.utc) - timedelta(days=d), [f"a{d}"]) for d in (3, 2, 1)]
    flaky = Repository(FlakyStore(tmp_path, {layout.backup_key(ids[0], layout.MANIFEST)}))
    from mender_backup.output import Reporter
    with pytest.raises(prune.PruneRefused, match=f"deleted nothing.*{ids[0]}"):
        prune.run(flaky, Policy(last=1), Reporter("quiet"), dry_run=False)
    assert [e.state for e in ok.backups().entries] == [COMPLETE] * 3
    assert sorted(ok.stored_artifacts()) == ["a1", "a2", "a3"]
    # `latest` cannot be decided either while a newer manifest may exist unread
    flaky_new = Repository(FlakyStore(tmp_path, {layout.backup_key(ids[2], layout.MANIFEST)}))
    with pytest.raises(MenderBackupError, match="cannot tell which backup"):
        flaky_new.resolve("latest")


def test_a_damaged_slice_manifest_wedges_nothing_and_goes_when_unneeded(repo):
    repo.store.put_bytes(layout.slice_key("100.1-200.1.json"), b"")          # empty: damaged
    repo.store.put_bytes(layout.slice_key("100.1-200.1.bson.zst"), b"z")
    slices = repo.slices()
    assert slices.valid == [] and [d.name for d in slices.damaged] == ["100.1-200.1"]
    assert not slices.read_errors
    slices.require_readable("x")      # damage is not doubt: nothing to refuse


def test_partial_files_of_killed_runs_are_collected_under_the_lock_only_in_its_prefixes(repo):
    root = repo.store.root
    (root / "backups/b1").mkdir(parents=True)
    (root / "oplog").mkdir()
    killed = root / "backups/b1/.mongodb.archive.zst.abc.partial"
    oplog_live = root / "oplog/.1.1-2.2.bson.zst.def.partial"
    fresh = root / "backups/b1/.verified.json.ghi.partial"     # a verdict being written (no lock)
    for f in (killed, oplog_live, fresh):
        f.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(killed, (hour_ago, hour_ago))
    os.utime(oplog_live, (hour_ago, hour_ago))
    with repo.backups_lock("prune") as lock:
        lock.acquire()
        assert repo.collect_leftovers(lock) == 1
    assert not killed.exists() and fresh.exists()
    assert oplog_live.exists()          # below oplog/: the oplog run's lock covers it, not this one


class ReadOnlyStore(FileStore):
    """A real folder that refuses every write, as a read-only mount does (the suite runs as
    root, whom a chmod does not stop)."""

    def open_write(self, key: str, durable: bool = False):
        raise OSError(30, "Read-only file system")

    def create_exclusive(self, key: str, data: bytes) -> bool:
        raise OSError(30, "Read-only file system")

    def delete(self, keys: list[str]) -> None:
        raise OSError(30, "Read-only file system")


def test_listing_works_on_a_read_only_destination(repo, tmp_path):
    put_backup(repo, NOW - timedelta(hours=1))
    from mender_backup.engine.listing import listing
    from mender_backup.format.encryption import Keyring
    rows = listing(Repository(ReadOnlyStore(tmp_path, f"file://{tmp_path}")), Keyring([])).rows
    assert [r["state"] for r in rows] == [COMPLETE]


@pytest.mark.parametrize("spoil", [
    lambda m: m.update(created_at="2026-12-06T11:00:00"),           # a naive time
    lambda m: m["archive"].update(size="12"),                       # a wrongly typed field
    lambda m: m["artifacts"].append({"key": "../../etc/passwd", "size": 1}),
], ids=["naive-created_at", "string-size", "escaping-artifact-key"])
def test_an_invalid_manifest_is_unknown_and_breaks_no_listing(repo, spoil):
    bid = layout.new_id(NOW - timedelta(hours=1))
    m = json.loads(manifest(bid, NOW - timedelta(hours=1)).to_json())
    spoil(m)
    repo.store.put_bytes(layout.backup_key(bid, layout.MANIFEST), json.dumps(m).encode())
    (e,) = repo.backups(NOW).entries
    assert e.state == UNKNOWN and not e.read_error and e.problem
    from mender_backup.engine.listing import listing
    from mender_backup.format.encryption import Keyring
    assert [r["state"] for r in listing(repo, Keyring([])).rows] == [UNKNOWN]
