"""Which backups a keep-last / daily / weekly / monthly policy keeps.

The rules are restic's: keep the N newest; for each of the N newest days (weeks,
months) that have a backup, keep the newest backup of that day (week, month).
A backup kept by any rule is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..errors import UsageError


@dataclass(frozen=True)
class Policy:
    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __post_init__(self):
        for name in ("last", "daily", "weekly", "monthly"):
            if getattr(self, name) < 0:
                raise UsageError(f"--keep-{name} must be 0 or more")

    @property
    def empty(self) -> bool:
        return not (self.last or self.daily or self.weekly or self.monthly)


def keep(backups: dict[str, datetime], policy: Policy) -> dict[str, list[str]]:
    """backup id -> the rules that keep it (ids missing from the result are dropped)."""
    newest_first = sorted(backups, key=lambda b: (backups[b], b), reverse=True)
    reasons: dict[str, list[str]] = {}
    for b in newest_first[:policy.last]:
        reasons.setdefault(b, []).append("last")
    buckets = (
        ("daily", policy.daily, lambda t: t.strftime("%Y-%m-%d")),
        ("weekly", policy.weekly, lambda t: "%04d-W%02d" % t.isocalendar()[:2]),
        ("monthly", policy.monthly, lambda t: t.strftime("%Y-%m")),
    )
    for rule, n, period in buckets:
        seen: set[str] = set()
        for b in newest_first:
            if len(seen) >= n:
                break
            p = period(backups[b])
            if p not in seen:
                seen.add(p)
                reasons.setdefault(b, []).append(rule)
    return reasons
