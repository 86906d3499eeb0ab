"""Point-in-time recovery: `mender-backup oplog` (what the oplog CronJob runs) between
changes, then `restore --to-time` to several times, each giving exactly the source's
state at that time; gaps (the oplog rolled over between two runs), corrupt slices and
times not yet shipped refused before anything is written."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from bson import Timestamp

from testenv import mender_data
from tests import manifests, writer
from tests.cli import assert_one_line_error, result_of, run
from tests.test_backup_restore import snapshot

SYSTEM = {"admin", "local", "config"}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Source:
    """A replica set, its destination, and the writer's count of writes made."""

    def __init__(self, server, dest):
        self.server, self.client, self.dest = server, server.client(), dest
        self.env = {"MONGODB_URL": server.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}"}
        self.n = 0

    def write(self, count: int) -> None:
        for i in range(self.n, self.n + count):
            writer.write(self.client, i)
        self.n += count

    def point(self) -> tuple[str, int]:
        """A time between two changes, and how many writes it follows. The waits are the
        server's: its oplog entries carry its wall clock (milliseconds), and the time must
        fall strictly between two of them; no clock of ours decides it."""
        time.sleep(0.05)
        t = now()
        time.sleep(0.05)
        return t, self.n

    def backup(self) -> str:
        return result_of(run("backup", "--json", env=self.env))["id"]

    def ship(self, check: bool = True):
        return run("oplog", "--json", env=self.env, check=check)

    def slices(self) -> list[str]:
        return sorted(p.name[:-len(".json")] for p in (self.dest / "oplog").glob("*.json"))


def restore_to(src: Source, target, when: str, *args, check=True, env_extra: dict | None = None):
    return run("restore", "--to-time", when, "--json", *args,
               env={**src.env, "MONGODB_URL": target.url, **(env_extra or {})}, check=check)


def user_databases(client) -> list[str]:
    return sorted(set(client.list_database_names()) - SYSTEM)


def test_restore_to_three_times_gives_the_source_at_each(new_replica_set, new_ferretdb, tmp_path):
    src = Source(new_replica_set(), tmp_path)
    mender_data.seed_mongo(src.client, scale=0.1)
    mender = {k: v for k, v in snapshot(src.client).items() if not k.startswith("pairs_")}
    src.write(30)
    first = src.backup()
    points = []
    for k in range(4):
        src.write(24)
        shipped = result_of(src.ship())
        assert shipped["shipped"] >= 24
        points.append(src.point())
        if k == 1:
            second = src.backup()
    src.write(12)
    src.ship()                       # the oplog past the last point: it is now covered
    assert len(src.slices()) == 5

    listing = {b["id"]: b for b in result_of(run("list", "--json", env=src.env))}
    last_slice = json.loads((tmp_path / "oplog" / f"{src.slices()[-1]}.json").read_bytes())
    assert listing[first]["restorable_until"] == listing[second]["restorable_until"] == last_slice["to"]["time"]
    assert listing[first]["consistent_at"] < points[0][0] < listing[second]["consistent_at"] < points[2][0]

    dry = result_of(restore_to(src, new_ferretdb(), points[0][0], "--dry-run"))
    assert dry["dry_run"] is True and dry["oplog"]["replayed"]["reached_limit"] is True

    for (when, n), base in ((points[0], first), (points[1], second), (points[3], second)):
        target = new_ferretdb()
        res = result_of(restore_to(src, target, when))
        assert res["backup"] == base and res["verified"] is True and res["oplog"]["slices"]
        assert res["oplog"]["replayed"]["last"]["time"] <= when
        restored = writer.state(target.client())
        assert restored == writer.expected(n), (when, n)
        assert {k: v for k, v in snapshot(target.client()).items() if not k.startswith("pairs_")} == mender

    # a time the shipped oplog does not reach yet
    target = new_ferretdb()
    r = restore_to(src, target, "2099-01-01T00:00:00Z", check=False)
    assert_one_line_error(r, 3, "shipped only up to", "run `mender-backup oplog`")
    # before any consistent backup
    assert_one_line_error(restore_to(src, target, "2001-01-01T00:00:00Z", check=False), 3,
                          "no point-in-time consistent backup before")
    assert user_databases(target.client()) == []

    # retention keeps the slices the kept backups need, and the newest one
    pruned = result_of(run("prune", "--keep-last", "1", "--json", env=src.env))
    assert pruned["delete"] == [first]
    kept_end = json.loads((tmp_path / "backups" / second / "manifest.json").read_bytes())["point_in_time"]["end"]
    assert pruned["delete_oplog_slices"] and all(
        json.loads((tmp_path / "oplog" / f"{s}.json").read_bytes())["to"]["t"] >= kept_end["t"] for s in src.slices())
    target = new_ferretdb()
    result_of(restore_to(src, target, points[3][0]))
    assert writer.state(target.client()) == writer.expected(points[3][1])


def test_a_gap_in_the_slices_is_refused_and_nothing_written(new_replica_set, new_ferretdb, tmp_path):
    src = Source(new_replica_set(max_entries=40), tmp_path)
    src.write(12)
    first = src.backup()
    src.write(12)
    before_gap, n_before = src.point()
    src.write(12)
    src.ship()
    last_before_gap = json.loads((tmp_path / "oplog" / f"{src.slices()[-1]}.json").read_bytes())["to"]

    # 120 writes into a 40-entry oplog, trimmed every second: the next run finds its start gone
    src.write(120)
    deadline = time.monotonic() + 20
    while src.client.local["oplog.rs"].find_one(sort=[("$natural", 1)])["ts"] <= \
            Timestamp(last_before_gap["t"], last_before_gap["i"]):
        assert time.monotonic() < deadline, "FerretDB did not trim its capped oplog"
        time.sleep(0.2)
    r = src.ship(check=False)
    assert_one_line_error(r, 5, "the oplog rolled over since the last slice", "no restore can reach a time between")
    assert len(src.slices()) == 2              # what the oplog still had is shipped: a new chain starts
    after_gap, _ = src.point()
    src.write(12)
    src.ship()

    listing = {b["id"]: b for b in result_of(run("list", "--json", env=src.env))}
    assert listing[first]["restorable_until"] == last_before_gap["time"]

    target = new_ferretdb()
    r = restore_to(src, target, after_gap, check=False)
    assert_one_line_error(r, 5, "gap between", "rolled over between two runs", f"restorable up to {last_before_gap['time']}")
    assert user_databases(target.client()) == []

    res = result_of(restore_to(src, target, before_gap))        # before the gap: fine
    assert writer.state(target.client()) == writer.expected(n_before) and res["backup"] == first

    # a slice whose bytes do not match its manifest: refused before the target is touched
    data = tmp_path / "oplog" / f"{src.slices()[0]}.bson.zst"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    target = new_ferretdb()
    assert_one_line_error(restore_to(src, target, before_gap, check=False), 5, "oplog slice", "is corrupt")
    assert user_databases(target.client()) == []


def test_oplog_needs_a_replica_set(new_ferretdb, tmp_path):
    standalone = new_ferretdb()
    r = run("oplog", env={"MONGODB_URL": standalone.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"},
            check=False)
    assert_one_line_error(r, 2, "cannot ship the oplog", "needs a replica set")
    assert not (tmp_path / "oplog").exists()


def test_slices_are_encrypted_with_the_backups_key(new_replica_set, new_ferretdb, tmp_path):
    """With a key, `oplog` encrypts its slices as `backup` encrypts its archive: the stored
    bytes show nothing of the entries, a restore to a time decrypts them; without the key it
    is refused in one line before anything is written."""
    from mender_backup.format.encryption import Key
    key = Key.generate().to_base64()
    src = Source(new_replica_set(), tmp_path)
    src.env["MENDER_BACKUP_ENCRYPTION_KEY"] = key
    src.write(10)
    src.backup()
    src.write(10)
    when, n = src.point()
    src.write(5)
    assert result_of(src.ship())["shipped"] >= 15
    (name,) = src.slices()
    meta = json.loads((tmp_path / "oplog" / f"{name}.json").read_text())
    assert meta["format_version"] == 2 and meta["encryption"]["key_fingerprint"]
    stored = (tmp_path / "oplog" / f"{name}.bson.zst").read_bytes()
    assert b"pairs_" not in stored and not stored.startswith(b"\x28\xb5\x2f\xfd")   # not zstd, not plain
    target = new_ferretdb()
    no_key = {k: v for k, v in src.env.items() if k != "MENDER_BACKUP_ENCRYPTION_KEY"}
    r = run("restore", "--to-time", when, "--json", env={**no_key, "MONGODB_URL": target.url}, check=False)
    assert_one_line_error(r, 6, "encrypted with key")
    assert user_databases(target.client()) == []
    assert result_of(restore_to(src, target, when))["verified"]
    assert writer.state(target.client()) == writer.expected(n)       # the state at `when`, exactly


def test_a_damaged_slice_manifest_wedges_nothing_and_slices_need_no_room_in_tmpdir(
        new_replica_set, new_ferretdb, minio, bucket, tmp_path):
    """An empty oplog/*.json (a damaged object at the destination) is listed apart and used by
    no restore: `list`, `oplog`, `prune` and `restore --to-time` go on. With no room in TMPDIR
    (MENDER_BACKUP_TMP_LIMIT=1Ki) the slices are read from S3 twice, not refused."""
    src = Source(new_replica_set(), tmp_path)
    src.env = {**minio.env(), "MONGODB_URL": src.server.url, "MENDER_BACKUP_DESTINATION": f"s3://{bucket}/pitr"}
    manifests.mark_hand_made_s3(minio.client(), bucket, "pitr")
    src.write(12)
    first = src.backup()
    src.write(12)
    result_of(src.ship())
    when, n = src.point()
    src.write(6)
    result_of(src.ship())
    minio.client().put_object(Bucket=bucket, Key="pitr/oplog/1.1-2.1.json", Body=b"")   # damaged, oldest
    listed = run("list", "--json", env=src.env)
    assert "oplog slice 1.1-2.1" in listed.stdout and [b["id"] for b in result_of(listed)] == [first]
    src.write(6)
    assert result_of(src.ship())["shipped"] >= 6             # continues from the valid slices

    target = new_ferretdb()
    r = restore_to(src, target, when, env_extra={"MENDER_BACKUP_TMP_LIMIT": "1Ki"})
    assert result_of(r)["verified"] is True and "reading it from the store twice" in r.stdout
    assert writer.state(target.client()) == writer.expected(n)

    pruned = result_of(run("prune", "--keep-last", "1", "--json", env=src.env))
    assert pruned["delete"] == [] and "1.1-2.1" in pruned["delete_oplog_slices"]   # before every kept backup
    assert "1.1-2.1" not in run("list", "--json", env=src.env).stdout
