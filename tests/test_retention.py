"""Which backups a retention policy keeps (pure logic)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mender_backup.errors import UsageError
from mender_backup.engine.retention import Policy, keep

T = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def hourly(days: int) -> dict[str, datetime]:
    """Four backups a day (every 6 h) for `days` days, newest at T."""
    return {f"b{i:03d}": T - timedelta(hours=6 * i) for i in range(days * 4)}


def test_keep_last():
    b = hourly(3)
    assert sorted(keep(b, Policy(last=3))) == ["b000", "b001", "b002"]


def test_keep_daily_takes_the_newest_of_each_day():
    b = hourly(10)
    kept = keep(b, Policy(daily=3))
    days = sorted(b[k].date() for k in kept)
    assert len(kept) == 3 and len(set(days)) == 3
    for k in kept:   # newest of its day
        assert all(b[o] <= b[k] for o in b if b[o].date() == b[k].date())


def test_keep_weekly_and_monthly():
    b = {f"d{i:03d}": T - timedelta(days=i) for i in range(120)}
    w = keep(b, Policy(weekly=4))
    assert len(w) == 4 and len({b[k].isocalendar()[:2] for k in w}) == 4
    m = keep(b, Policy(monthly=3))
    assert sorted(b[k].strftime("%Y-%m") for k in m) == ["2026-09", "2026-10", "2026-11"]


def test_rules_combine_and_report_why():
    b = hourly(5)
    r = keep(b, Policy(last=2, daily=5))
    assert r["b000"] == ["last", "daily"]
    assert r["b001"] == ["last"]
    assert len(r) == 6


def test_negative_is_refused():
    with pytest.raises(UsageError):
        Policy(last=-1)


def test_empty_policy_keeps_nothing_and_is_flagged():
    assert Policy().empty
    assert keep(hourly(1), Policy()) == {}
