"""Schedules are checked before helm sees them."""

import pytest

from mender_backup.helm.cron import check_schedule
from mender_backup.errors import UsageError


@pytest.mark.parametrize("ok", ["0 3 * * *", "*/15 * * * *", "0 0 1,15 * MON-FRI", "30 2 * JAN,JUL 0",
                                "@daily", "@weekly", "0 0 ? * 7", "5-10/2 0-23 1-31 1-12 0-7"])
def test_valid(ok):
    assert check_schedule(ok)


@pytest.mark.parametrize("bad,fragment", [
    ("every night", "need 5 fields"), ("0 3 * *", "need 5 fields"), ("60 3 * * *", "minute"),
    ("0 24 * * *", "hour"), ("0 0 0 * *", "day of month"), ("0 0 * 13 *", "month"),
    ("0 0 * * 8", "day of week"), ("*/0 * * * *", "minute"), ("0 5-1 * * *", "hour"),
    ("? * * * *", "minute"), ("@sometimes", "need 5 fields"),
])
def test_invalid_is_one_clear_line(bad, fragment):
    with pytest.raises(UsageError, match=fragment) as e:
        check_schedule(bad)
    assert "\n" not in str(e.value) and e.value.exit_code == 2
