"""Schedules are checked before helm sees them."""

import pytest

from mender_backup.engine.release.cron import check_schedule
from mender_backup.errors import UsageError


@pytest.mark.parametrize("ok", ["0 3 * * *", "*/15 * * * *", "0 0 1,15 * MON-FRI", "30 2 * JAN,JUL 0",
                                "@daily", "@weekly", "0 0 ? * 6", "5-10/2 0-23 1-31 1-12 0-6"])
def test_valid(ok):
    assert check_schedule(ok)


@pytest.mark.parametrize("bad,fragment", [
    ("every night", "need 5 fields"), ("0 3 * *", "need 5 fields"), ("60 3 * * *", "minute"),
    ("0 24 * * *", "hour"), ("0 0 0 * *", "day of month"), ("0 0 * 13 *", "month"),
    ("0 0 * * 7", "day of week"), ("0 0 * * 1-7", "day of week"), ("*/0 * * * *", "minute"), ("0 5-1 * * *", "hour"),
    ("? * * * *", "minute"), ("@sometimes", "need 5 fields"),
])
def test_invalid_is_one_clear_line(bad, fragment):
    with pytest.raises(UsageError, match=fragment) as e:
        check_schedule(bad)
    assert "\n" not in str(e.value) and e.value.exit_code == 2


SCHEDULES = ["0 3 * * *", "0 0 * * 0", "0 0 * * 6", "0 0 * * 7", "0 0 * * 1-7", "0 0 * * SUN", "0 0 ? * MON",
             "*/5 * * * *", "0 24 * * *", "@daily", "0 0 1 JAN *", "0 0 31 2 *", "5-1 * * * *"]


def test_same_verdict_as_the_kubernetes_api(kube_cluster):
    """Our check and the real kube-apiserver's CronJob validation agree on every schedule."""
    from testenv.kube import ApiError
    for schedule in SCHEDULES:
        cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "schedule-check"},
                   "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                       "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}}}
        try:
            kube_cluster.request("POST", "/apis/batch/v1/namespaces/default/cronjobs?dryRun=All", cronjob)
            k8s_ok = True
        except ApiError as exc:
            assert exc.status == 422, exc
            k8s_ok = False
        try:
            check_schedule(schedule)
            ours = True
        except UsageError:
            ours = False
        assert ours == k8s_ok, f"{schedule!r}: kube-apiserver says {k8s_ok}, we say {ours}"
