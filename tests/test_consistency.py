"""Consistent backups of a live server (engine/capture.py): a writer keeps changing two
databases during the backup; the restore (documents, then the captured oplog) equals the
source's state at the recorded consistency point, and the real mongorestore reads the
archive's oplog. FerretDB v1 as a one-member replica set is the only server here with an
oplog (tests/ENVIRONMENT.md: it logs inserts, `$set` updates and deletes, no commands)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import zstandard
from bson import Timestamp

from testenv import mender_data
from tests import writer
from tests.cli import assert_one_line_error, result_of, run, start
from tests.test_backup_restore import snapshot


def backup_under_writes(src, dest) -> tuple[dict, int]:
    """-> (the manifest, how many of the writer's writes the consistency point includes)"""
    e = {"MONGODB_URL": src.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}"}
    with writer.Writer(src.client()) as w:
        bid = result_of(run("backup", "--json", env=e))["id"]
        during = w.done
    manifest = json.loads((dest / "backups" / bid / "manifest.json").read_bytes())
    end = manifest["point_in_time"]["end"]
    n = writer.writes_until(src.client(), Timestamp(end["t"], end["i"]))
    assert 30 <= n <= during     # the writer wrote before, during and after the dump
    return manifest, n


def test_a_backup_under_writes_restores_the_state_at_its_consistency_point(new_replica_set, new_ferretdb,
                                                                           tmp_path):
    src = new_replica_set()
    mender_data.seed_mongo(src.client(), scale=1)        # enough data for the dump to take a while
    mender_before = {k: v for k, v in snapshot(src.client()).items() if not k.startswith("pairs_")}
    manifest, n = backup_under_writes(src, tmp_path)
    pit = manifest["point_in_time"]
    assert manifest["format_version"] == 3 and pit["consistent"] is True
    assert pit["oplog"]["count"] > 10, "no writes during the dump: the test proves nothing"

    target = new_ferretdb()
    res = result_of(run("restore", manifest["id"], "--json",
                        env={"MONGODB_URL": target.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}))
    assert res["verified"] is True and res["oplog"]["replayed"]["entries"] == pit["oplog"]["count"]
    assert res["oplog"]["replayed"]["last"] == pit["end"]
    restored = writer.state(target.client())
    assert writer.pairs_consistent(restored)
    assert restored == writer.expected(n)            # exactly the source at the consistency point
    assert {k: v for k, v in snapshot(target.client()).items() if not k.startswith("pairs_")} == mender_before

    listing = result_of(run("list", "--json", env={"MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}))
    assert listing[0]["consistent"] is True and listing[0]["consistent_at"] == pit["end"]["time"]
    # verify --deep re-reads the archive's oplog too, against the manifest's count and digest
    deep = result_of(run("verify", manifest["id"], "--deep", "--json",
                         env={"MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}))
    assert deep["collections"] == len(mender_before) + 2 + 1


def test_a_backup_of_some_databases_carries_only_their_writes(new_replica_set, new_ferretdb, tmp_path):
    """--db: the archive's oplog keeps the entries of those databases only, so the restore writes
    nothing else, and replays exactly the chosen database's writes up to the consistency point."""
    src = new_replica_set()
    mender_data.seed_mongo(src.client(), scale=0.3)
    e = {"MONGODB_URL": src.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    with writer.Writer(src.client()):
        bid = result_of(run("backup", "--db", writer.DBS[0], "--db", "inventory", "--json", env=e))["id"]
    manifest = json.loads((tmp_path / "backups" / bid / "manifest.json").read_bytes())
    pit = manifest["point_in_time"]
    assert pit["databases"] == sorted([writer.DBS[0], "inventory"]) and pit["oplog"]["count"] > 0
    target = new_ferretdb()
    res = result_of(run("restore", bid, "--json", env={**e, "MONGODB_URL": target.url}))
    assert res["oplog"]["replayed"]["skipped"].get("database not restored", 0) == 0   # none were captured
    assert sorted(set(target.client().list_database_names()) - {"admin", "local", "config"}) == \
        sorted([writer.DBS[0], "inventory"])
    n = writer.writes_until(src.client(), Timestamp(pit["end"]["t"], pit["end"]["i"]))
    assert writer.state(target.client())[writer.DBS[0]] == writer.expected(n)[writer.DBS[0]]


def test_the_real_mongorestore_replays_our_archives_oplog_as_mongodumps(new_replica_set, new_ferretdb,
                                                                       mongorestore, mongodump, tmp_path):
    """mongorestore --oplogReplay takes our archive's oplog namespace as the oplog, exactly as
    it takes a real `mongodump --oplog` archive's: it restores the documents, then replays. It
    applies entries with the server's applyOps, which FerretDB v1 lacks, so here the replay of
    either archive stops at its first entry with that refusal (on a real mongod it completes;
    tests/ENVIRONMENT.md). Before that, the documents it restored are the archive's."""
    src = new_replica_set()
    mender_data.seed_mongo(src.client(), scale=0.3)
    manifest, _ = backup_under_writes(src, tmp_path)
    packed = tmp_path / "backups" / manifest["id"] / "mongodb.archive.zst"
    ours = tmp_path / "ours.archive"
    with open(packed, "rb") as f, open(ours, "wb") as out:
        zstandard.ZstdDecompressor().copy_stream(f, out)
    theirs = tmp_path / "theirs.archive"
    with writer.Writer(src.client()):
        subprocess.run([mongodump, f"--uri={src.url}", "--oplog", f"--archive={theirs}"], check=True,
                       capture_output=True)

    outcomes = []
    for archive in (ours, theirs):
        target = new_ferretdb()
        r = subprocess.run([mongorestore, f"--uri={target.url}", f"--archive={archive}", "--oplogReplay"],
                           capture_output=True, text=True)
        failed = [line.split("\t", 1)[1] for line in r.stderr.splitlines() if "\tFailed:" in line]
        outcomes.append((r.returncode, "replaying oplog" in r.stderr, failed))
        if archive == ours:
            mine = new_ferretdb()
            run("restore", manifest["id"], "--no-oplog-replay",
                env={"MONGODB_URL": mine.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"})
            docs = {k: v["docs"] for k, v in snapshot(target.client()).items()}
            assert docs == {k: v["docs"] for k, v in snapshot(mine.client()).items()}
    refusal = ["Failed: restore error: error applying oplog: applyOps: (CommandNotFound) no such command: 'applyOps'"]
    assert outcomes == [(1, True, refusal), (1, True, refusal)]


def test_oplog_roll_over_during_a_backup_fails_it_in_one_line(new_replica_set, tmp_path):
    """The backup is stopped (SIGSTOP) right after it noted its oplog position; meanwhile the
    oplog, capped at 50 entries and trimmed every second, rolls past it."""
    src = new_replica_set(max_entries=50)
    mender_data.seed_mongo(src.client(), scale=0.3)
    client = src.client()
    proc = start("backup", "--json", env={"MONGODB_URL": src.url, "MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"})
    try:
        for line in proc.stdout:
            if "oplog_start" in line:
                os.kill(proc.pid, signal.SIGSTOP)
                noted = json.loads(line)["oplog_start"]
                break
        t, i = (int(x) for x in noted.split(":"))
        client.rolls.over.insert_many([{"i": i} for i in range(200)])
        deadline = time.monotonic() + 20
        while client.local["oplog.rs"].find_one(sort=[("$natural", 1)])["ts"] <= Timestamp(t, i):
            assert time.monotonic() < deadline, "FerretDB did not trim its capped oplog"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_one_line_error(r, 5, "the oplog rolled over during the backup", f"{t}:{i}")
    assert not list(tmp_path.rglob("manifest.json"))
    assert not [p for p in (tmp_path / "backups").rglob("*") if p.is_file()]     # nothing half-written
