"""The CPUs and memory this process may use: its container's (cgroup) limits, not the node's.

A pod limited to 2 CPUs and 1 GiB on a 64-core node still sees 64 processors in
`os.sched_getaffinity`; a thread pool sized on that (xz: ~150 MiB a thread) would be killed
for memory. Both cgroup versions are read, the process's own group and its ancestors (the
lowest limit wins), as the kernel applies them."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_UNLIMITED = 1 << 60      # cgroup v1 writes "no limit" as a page-aligned LONG_MAX


def cpus() -> int:
    """Processors this process may run on, lowered to its CPU quota (rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    for quota, period in _cpu_quotas(CGROUP, PROC_CGROUP):
        if quota > 0 and period > 0:
            n = min(n, math.ceil(quota / period))
    return max(1, n)


def memory() -> int | None:
    """The memory limit in bytes, or None when there is none."""
    limits = [v for v in _memory_limits(CGROUP, PROC_CGROUP) if 0 < v < _UNLIMITED]
    return min(limits) if limits else None


def _groups(root: Path, proc_cgroup: Path) -> dict[str, str]:
    """controller (v1) or '' (v2) -> the process's group path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _dirs(base: Path, path: str) -> list[Path]:
    """The group's folder and its ancestors' up to `base`. In a container the group's own
    folder is usually mounted as `base` itself (path not found below it): then just `base`."""
    here = base / path.strip("/")
    if not here.is_dir():
        return [base]
    out = [here]
    while here != base:
        here = here.parent
        out.append(here)
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_quotas(root: Path, proc_cgroup: Path) -> list[tuple[int, int]]:
    groups, out = _groups(root, proc_cgroup), []
    if "" in groups and (root / "cgroup.controllers").exists():          # v2
        for d in _dirs(root, groups[""]):
            v = _read(d / "cpu.max")
            if v and not v.startswith("max"):
                quota, _, period = v.partition(" ")
                out.append((int(quota), int(period or 100000)))
    if "cpu" in groups:                                                   # v1
        for base in (root / "cpu", root / "cpu,cpuacct"):
            if base.is_dir():
                for d in _dirs(base, groups["cpu"]):
                    q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                    if q and p and q.lstrip("-").isdigit() and p.isdigit():
                        out.append((int(q), int(p)))
                break
    return out


def _memory_limits(root: Path, proc_cgroup: Path) -> list[int]:
    groups, out = _groups(root, proc_cgroup), []
    if "" in groups and (root / "cgroup.controllers").exists():          # v2
        for d in _dirs(root, groups[""]):
            v = _read(d / "memory.max")
            if v and v.isdigit():
                out.append(int(v))
    if "memory" in groups and (root / "memory").is_dir():                # v1
        for d in _dirs(root / "memory", groups["memory"]):
            v = _read(d / "memory.limit_in_bytes")
            if v and v.isdigit():
                out.append(int(v))
    return out
