"""A restore says "verified" only when every planned collection was checked.

`concurrent.futures.wait` returns once the insert futures are done, which can be before
their done callbacks ran; the callback is what schedules a collection's check
(engine/load.py). Delaying the callbacks opens that window wide: a manifest count that
cannot match must fail the restore every time, never come out "verified".
"""

from __future__ import annotations

import json
import time

import pytest

from mender_backup.engine import load, restore
from mender_backup.errors import IntegrityError
from mender_backup.output import Reporter
from tests.cli import result_of, run

RUNS = 5


@pytest.fixture
def slow_acknowledgements(monkeypatch):
    """Every insert's done callback sleeps before it acknowledges the insert."""
    original = load.Loader._acknowledged

    def slow(self, ns):
        time.sleep(0.3)
        original(self, ns)

    monkeypatch.setattr(load.Loader, "_acknowledged", slow)


@pytest.fixture
def backed_up(new_mongodb, tmp_path):
    src = new_mongodb()
    db = src.client()["verify_me"]
    db.small.insert_many([{"i": i} for i in range(10)])
    db.other.insert_many([{"i": i, "pad": "x" * 100} for i in range(200)])
    dest = tmp_path / "dest"
    e = {"MONGODB_URL": src.url, "MENDER_BACKUP_DESTINATION": f"file://{dest}"}
    bid = result_of(run("backup", "--json", env=e))["id"]
    return dest, bid, next(dest.rglob(f"{bid}/manifest.json"))


def _restore(target, dest, bid, verify: str = "full") -> dict:
    return restore.run(restore.RestoreOptions(mongodb_url=target.url, backup_id=bid, source=f"file://{dest}",
                                              drop=True, verify=verify), Reporter("quiet"))


@pytest.fixture
def without_the_plan_check(monkeypatch):
    """The restore proves the archive holds what the manifest lists before it writes
    (integrity.check_plan), which already refuses a wrong count. Switched off here, so the
    load's own check is what must catch it: the last line, whatever came before."""
    from mender_backup.engine import integrity
    monkeypatch.setattr(integrity, "check_plan", lambda manifest, contents: None)


def test_the_plan_check_refuses_a_wrong_count_before_any_write(backed_up, new_mongodb):
    dest, bid, manifest_path = backed_up
    manifest = json.loads(manifest_path.read_text())
    manifest["databases"]["verify_me"]["small"]["count"] += 1
    manifest_path.write_text(json.dumps(manifest))
    target = new_mongodb()
    with pytest.raises(IntegrityError, match=r"verify_me\.small: 10 documents in the archive, expected 11"):
        _restore(target, dest, bid)
    assert "verify_me" not in target.client().list_database_names()


@pytest.mark.parametrize("verify", ["full", "counts"])
def test_a_wrong_manifest_count_always_fails_the_restore(backed_up, new_mongodb, slow_acknowledgements,
                                                         without_the_plan_check, verify):
    dest, bid, manifest_path = backed_up
    manifest = json.loads(manifest_path.read_text())
    manifest["databases"]["verify_me"]["small"]["count"] += 1          # a count the target cannot have
    manifest_path.write_text(json.dumps(manifest))
    target = new_mongodb()
    for _ in range(RUNS):
        with pytest.raises(IntegrityError, match=r"verify_me\.small: 10 documents in the target, expected 11"):
            _restore(target, dest, bid, verify)


def test_delayed_acknowledgements_still_verify_every_collection(backed_up, new_mongodb, slow_acknowledgements):
    dest, bid, _ = backed_up
    target = new_mongodb()
    for _ in range(RUNS):
        assert _restore(target, dest, bid)["verified"] is True


def test_verification_refuses_a_planned_collection_without_a_check():
    v = load.Verification([("a", "x"), ("a", "y")], "full")
    v.record(("a", "x"), load._Counted(3))
    with pytest.raises(IntegrityError, match=r"1 collection\(s\) were not checked \(a\.y\)"):
        v.require()
    v.record(("a", "y"), load._Counted(0))
    assert v.require().documents == 3
