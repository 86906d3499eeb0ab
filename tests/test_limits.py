"""Thread pools sized on the container's limits, not the node's: cgroup v1 and v2 trees as
the kernel shows them (the node test runs the real thing: tests/test_node.py)."""

from __future__ import annotations

import os

import pytest

from mender_backup import limits
from mender_backup.format import compression

GiB = 1 << 30


def _tree(tmp_path, version: int, group: str, files: dict[str, str]):
    root = tmp_path / "cgroup"
    root.mkdir()
    if version == 2:
        (root / "cgroup.controllers").write_text("cpu memory\n")
        proc = f"0::{group}\n"
    else:
        proc = f"4:memory:{group}\n3:cpu,cpuacct:{group}\n0::/\n"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    (tmp_path / "self-cgroup").write_text(proc)
    return root, tmp_path / "self-cgroup"


@pytest.fixture
def cgroup(tmp_path, monkeypatch):
    def make(version: int, group: str, files: dict[str, str]) -> None:
        root, proc = _tree(tmp_path, version, group, files)
        monkeypatch.setattr(limits, "CGROUP", root)
        monkeypatch.setattr(limits, "PROC_CGROUP", proc)
    return make


AFFINITY = len(os.sched_getaffinity(0))


def test_v2_quota_and_the_lowest_memory_limit_of_the_group_and_its_ancestors(cgroup):
    cgroup(2, "/kubepods/pod1/c1", {"kubepods/pod1/c1/cpu.max": "50000 100000",
                                    "kubepods/pod1/c1/memory.max": str(2 * GiB),
                                    "kubepods/pod1/memory.max": str(GiB),
                                    "kubepods/memory.max": "max"})
    assert limits.cpus() == 1
    assert limits.memory() == GiB


def test_v2_no_limits(cgroup):
    cgroup(2, "/", {"cpu.max": "max 100000", "memory.max": "max"})
    assert limits.cpus() == AFFINITY
    assert limits.memory() is None


def test_v1_container_with_its_own_group_mounted_as_the_root(cgroup):
    """Inside a container, /proc/self/cgroup names the host's path, which is not below the mount."""
    cgroup(1, "/kubepods/burstable/pod9/abc", {"cpu,cpuacct/cpu.cfs_quota_us": "150000",
                                               "cpu,cpuacct/cpu.cfs_period_us": "100000",
                                               "memory/memory.limit_in_bytes": str(512 << 20)})
    assert limits.cpus() == min(AFFINITY, 2)
    assert limits.memory() == 512 << 20


def test_v1_unlimited(cgroup):
    cgroup(1, "/", {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000",
                    "memory/memory.limit_in_bytes": "9223372036854771712"})
    assert limits.cpus() == AFFINITY
    assert limits.memory() is None


@pytest.mark.parametrize("memory, expected", [(512 << 20, 1), (GiB, min(AFFINITY, 4)), (None, AFFINITY)])
def test_xz_threads_fit_the_memory_limit(cgroup, memory, expected):
    """xz holds ~160 MiB a thread: a 512 MiB pod gets one thread, whatever the node's cores."""
    cgroup(2, "/", {"cpu.max": "max 100000", "memory.max": str(memory) if memory else "max"})
    assert compression.xz_threads() == expected
