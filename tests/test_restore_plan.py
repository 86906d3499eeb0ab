"""The restore's pure decisions, without a server (milliseconds): which base backup and
slices a restore to a time needs (pitr.choose), what the restore drops, creates and keeps
on a target (restore.plan.decide), and whether the archive's oplog is replayed
(restore.replay.plan)."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from mender_backup.engine import namespaces, pitr
from mender_backup.engine.restore import replay
from mender_backup.engine.restore.plan import decide
from mender_backup.errors import ConflictError, IntegrityError, NotFoundError, UsageError
from mender_backup.format.metadata import CollectionSpec
from mender_backup.format.slices import OpTime


def at(t: int) -> OpTime:
    return OpTime(t, 1, datetime.fromtimestamp(t, timezone.utc).isoformat())


def backup(bid: str, end: int | None, consistent: bool = True):
    pit = SimpleNamespace(consistent=consistent, end=at(end) if end is not None else None, databases=None)
    return SimpleNamespace(id=bid, point_in_time=pit)


def piece(first: int, last: int):
    return SimpleNamespace(name=f"{first}-{last}", first=at(first), last=at(last))


def to(t: int) -> pitr.Target:
    return pitr.Target(time=datetime.fromtimestamp(t, timezone.utc))


# ------------------------------------------------------------------ pitr.choose
def test_choose_takes_the_newest_base_before_the_target_and_the_chain_from_it():
    backups = [backup("b100", 100), backup("b200", 200), backup("b300", 300)]
    slices = [piece(50, 150), piece(150, 220), piece(220, 260), piece(260, 400)]
    p = pitr.choose(backups, slices, to(250), None)
    assert p.manifest.id == "b200"
    assert [s.name for s in p.slices] == ["150-220", "220-260"]      # from the one holding 200 to 250


def test_choose_a_target_at_the_consistency_point_needs_no_slice():
    p = pitr.choose([backup("b100", 100)], [piece(50, 150)], to(100), None)
    assert p.manifest.id == "b100" and p.slices == []


def test_choose_a_named_base_is_used_even_when_a_newer_one_exists():
    backups = [backup("b100", 100), backup("b200", 200)]
    p = pitr.choose(backups, [piece(90, 150), piece(150, 300)], to(250), "b100")
    assert p.manifest.id == "b100" and [s.name for s in p.slices] == ["90-150", "150-300"]
    assert pitr.choose(backups, [piece(190, 300)], to(250), "latest").manifest.id == "b200"


def test_choose_refuses_a_base_that_is_not_consistent_or_none_before_the_target():
    with pytest.raises(UsageError, match="not point-in-time consistent"):
        pitr.choose([backup("b1", None, consistent=False)], [], to(250), "b1")
    with pytest.raises(NotFoundError, match="no point-in-time consistent backup before"):
        pitr.choose([backup("b300", 300)], [piece(300, 400)], to(250), None)


def test_choose_refuses_a_gap_and_says_how_far_the_base_reaches():
    slices = [piece(50, 150), piece(170, 300)]            # 150..170 lost: the oplog rolled over
    with pytest.raises(IntegrityError, match="gap between") as e:
        pitr.choose([backup("b100", 100)], slices, to(250), None)
    assert f"restorable up to {at(150).time}" in str(e.value)


def test_choose_refuses_a_time_not_shipped_yet():
    with pytest.raises(NotFoundError, match="shipped only up to"):
        pitr.choose([backup("b100", 100)], [piece(50, 150), piece(150, 200)], to(250), None)
    with pytest.raises(NotFoundError, match="shipped only up to"):
        pitr.choose([backup("b100", 100)], [], to(250), None)


# ------------------------------------------------------------------ plan.decide
def spec(db: str, name: str) -> CollectionSpec:
    return CollectionSpec(db, name, indexes=[{"name": "_id_"}])


WANTED = [spec("inventory", "devices"), spec("deviceauth", "tokens")]
COUNTS = {("inventory", "devices"): 10, ("deviceauth", "tokens"): 3}


def test_plan_on_an_empty_target_creates_everything_and_drops_nothing():
    p = decide(WANTED, COUNTS, {}, drop=False)
    d = p.describe()
    assert d["drop"] == [] and d["untouched"] == []
    assert {c["namespace"]: c["documents"] for c in d["create"]} == {"inventory.devices": 10,
                                                                      "deviceauth.tokens": 3}


def test_plan_refuses_a_target_with_documents_without_drop():
    target = {"inventory": {"devices": 5, "other": 2}}
    with pytest.raises(ConflictError, match=r"inventory \(7 documents\)"):
        decide(WANTED, COUNTS, target, drop=False)


def test_plan_with_drop_drops_only_the_backups_collections_and_keeps_the_rest():
    target = {"inventory": {"devices": 5, "other": 2, "system.views": 1}, "deviceauth": {"tokens": 0}}
    d = decide(WANTED, COUNTS, target, drop=True).describe()
    assert d["drop"] == [{"namespace": "deviceauth.tokens", "documents": 0},
                         {"namespace": "inventory.devices", "documents": 5}]
    assert d["untouched"] == ["inventory.other"]               # never system.*


def test_plan_without_drop_adds_to_empty_collections_a_service_made():
    d = decide(WANTED, COUNTS, {"inventory": {"devices": 0, "empty": 0}}, drop=False).describe()
    assert d["drop"] == [] and d["untouched"] == ["inventory.empty"]


# ------------------------------------------------------------------ replay.plan
def opts(**kw):
    return SimpleNamespace(**{"oplog_replay": None, "databases": [], "to_time": None, **kw})


def manifest(consistent: bool):
    pit = SimpleNamespace(consistent=consistent, end=at(100) if consistent else None)
    return SimpleNamespace(point_in_time=pit)


def test_oplog_plan_replays_a_consistent_backups_oplog_and_not_a_vendor_archives():
    sel = namespaces.Selection(has_oplog=True)
    assert replay.plan(opts(), manifest(True), sel, None)["replay"] is True
    vendor = replay.plan(opts(), None, sel, None)
    assert vendor["replay"] is False and "add --oplog-replay" in vendor["reason"]
    assert replay.plan(opts(oplog_replay=True), None, sel, None)["replay"] is True
    off = replay.plan(opts(oplog_replay=False), manifest(True), sel, None)
    assert off["replay"] is False and "--no-oplog-replay" in off["reason"]


def test_oplog_plan_refusals():
    with pytest.raises(UsageError, match="no oplog to replay"):
        replay.plan(opts(oplog_replay=True), None, namespaces.Selection(), None)
    point = pitr.Plan(SimpleNamespace(id="b", point_in_time=SimpleNamespace(end=at(100))), [piece(90, 200)])
    with pytest.raises(UsageError, match="cannot go with --no-oplog-replay"):
        replay.plan(opts(oplog_replay=False), manifest(True), namespaces.Selection(has_oplog=True), point)
    assert replay.plan(opts(), None, namespaces.Selection(), point) == {
        "in_archive": False, "replay": True, "slices": ["90-200"]}


def test_dry_run_replay_with_nothing_to_replay_touches_nothing():
    job = replay.Job({"replay": False}, catalog=None)
    assert replay.replay(None, job, None, reporter=None) is None


# ------------------------------------------------------------------ a dry-run replay
def test_dry_run_replay_counts_skips_and_changes_the_index_catalog_without_a_server():
    import io

    import zstandard
    from bson import Timestamp

    from mender_backup.engine.replay import IndexCatalog, Limit
    from tests import oplogs
    cat = IndexCatalog()
    cat.add_collection("inventory", "devices", [{"name": "_id_", "key": {"_id": 1}}])
    t = oplogs.T0 + 1000
    stream = b"".join([
        oplogs.insert("inventory.devices", {"_id": 1}, ts=Timestamp(t, 1)),
        oplogs.insert("inventory.devices", {"_id": 1}, ts=Timestamp(t, 1)),            # the same entry again
        oplogs.insert("config.system.sessions", {"_id": 2}, ts=Timestamp(t, 2)),
        oplogs.entry("c", "inventory.$cmd", {"createIndexes": "devices", "v": 2, "key": {"mac": 1},
                                             "name": "mac_1"}, ts=Timestamp(t, 3)),
        oplogs.insert("other.things", {"_id": 3}, ts=Timestamp(t, 4)),                  # database not restored
        oplogs.insert("inventory.devices", {"_id": 4}, ts=Timestamp(t, 9)),             # past the limit
    ])
    events = []
    slice_ = zstandard.ZstdCompressor().compress(stream)        # a slice's bytes, as stored
    job = replay.Job({"replay": True, "in_archive": False}, cat, Limit(ts=Timestamp(t, 5)), {"inventory"},
                     slices=[(None, lambda: io.BytesIO(slice_))])
    stats = replay.replay(None, job, None, SimpleNamespace(info=lambda msg, **kw: events.append(msg)))
    assert stats["entries"] == 4                   # read and not before the last one: applied or skipped
    assert stats["skipped"] == {"already replayed": 1, "system database": 1, "database not restored": 1}
    assert "mac_1" in {i["name"] for i in cat.indexes[("inventory", "devices")]}
    assert events and events[0].startswith("oplog: would replay 4 entries")
