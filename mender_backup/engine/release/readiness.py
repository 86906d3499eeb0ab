"""Whether a Mender release is healthy after an upgrade or a rollback: every workload rolled
out and Ready (and still Ready a while later), then each service's readiness endpoint
asked through its Service (kube/probes.py)."""

from __future__ import annotations

from collections.abc import Callable

from ...kube import probes, workloads
from ...kube.connection import Kube
from ...kube.helm import Helm, ReleaseInfo
from .plan import release_workloads

Say = Callable[[str], None]


def check(helm: Helm, kube: Kube, info: ReleaseInfo, ready_timeout: float, say: Say, **wait) -> dict[str, str]:
    """What is not healthy after an upgrade or a rollback: workload -> why (empty: all is)."""
    ns = info.namespace
    current = release_workloads(helm, kube, info, companion=False)
    say(f"waiting up to {ready_timeout:.0f}s until every workload has rolled out and stays Ready for 20s")
    bad = workloads.wait_ready(kube, current, ready_timeout, **wait)
    for p in probes.probes(helm.get_manifest(info.name, namespace=ns)):
        if p.workload in bad:
            continue
        why = probes.check(kube, ns, p)
        if why:
            bad[p.workload] = why
        else:
            say(f"  {p}: healthy")
    return bad
