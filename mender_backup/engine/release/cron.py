"""Validate a CronJob schedule before helm sees it, so a typo is one clear line
(the chart's schema would also refuse it, in helm's words)."""

from __future__ import annotations

import re

from ...errors import UsageError

MACROS = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
DAYS = "SUN MON TUE WED THU FRI SAT".split()
# (name, lowest, highest, names)
FIELDS = [("minute", 0, 59, []), ("hour", 0, 23, []), ("day of month", 1, 31, []),
          ("month", 1, 12, MONTHS), ("day of week", 0, 6, DAYS)]
_ITEM = re.compile(r"^(\*|\?|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?$")


def _value(text: str, lo: int, hi: int, names: list[str]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + (1 if names is MONTHS else 0)
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ValueError(text)
    return int(text)


def check_schedule(schedule: str) -> str:
    s = " ".join(schedule.split())
    if s in MACROS:
        return s
    parts = s.split(" ")
    if len(parts) != 5:
        raise UsageError(f"bad schedule {schedule!r}: need 5 fields (minute hour day-of-month month "
                         f"day-of-week) or one of {', '.join(sorted(MACROS))}")
    for part, (name, lo, hi, names) in zip(parts, FIELDS):
        for item in part.split(","):
            m = _ITEM.match(item)
            try:
                if not m or (m.group(2) is not None and int(m.group(2)) == 0):
                    raise ValueError(item)
                if m.group(1) == "?" and name not in ("day of month", "day of week"):
                    raise ValueError(item)
                if m.group(1) not in ("*", "?"):
                    ends = [_value(x, lo, hi, names) for x in m.group(1).split("-")]
                    if len(ends) == 2 and ends[0] > ends[1]:
                        raise ValueError(item)
            except ValueError:
                raise UsageError(f"bad schedule {schedule!r}: {item!r} is not a valid {name} "
                                 f"({lo}-{hi}{', names' if names else ''}, *, ranges, lists, /steps)") from None
    return s
