"""What every part of a bench run shares: the work folder, the servers, the results."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .measure import BIN, Run, Series, clean_env, run_cmd

EXE = BIN / "mender-backup"
AWS = BIN / "aws"


@dataclass
class Ctx:
    work: Path
    quick: bool
    runs: int
    server_pids: dict[str, int | list[int]] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)        # data sizes, scales, timings of the setup
    started: float = field(default_factory=time.monotonic)

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def s(self, name: str) -> Series:
        if name not in self.series:
            self.series[name] = Series(name)
        return self.series[name]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return clean_env(extra, self.work)

    def measure(self, series: str, label: str, cmd, env: dict[str, str], **kw) -> Run:
        os.sync()       # the previous run's dirty pages are written back on nobody's clock
        r = run_cmd(label, cmd, env, self.work / "logs", self.server_pids, **kw)
        self.s(series).add(r)
        srv = ", ".join(f"{k} {v:.1f}s" for k, v in r.server_cpu.items() if v >= 0.05)
        self.log(f"  {label}: {r.wall:.2f}s wall, {r.cpu:.2f}s cpu, {r.maxrss / 2**20:.0f} MiB peak RSS"
                 + (f"; server cpu: {srv}" if srv else ""))
        return r

    def run_unmeasured(self, cmd: list[str]) -> None:
        """A command whose time is not reported (e.g. settling a freshly seeded server)."""
        run_cmd("unmeasured", cmd, self.env(), self.work / "logs")

    def ours(self, series: str, label: str, args: list[str], env: dict[str, str]) -> tuple[Run, dict]:
        """`mender-backup ARGS --json`, measured; returns the run and its result document."""
        r = self.measure(series, label, [str(EXE), *args, "--json"], env)
        results = [json.loads(line)["result"] for line in r.stdout.splitlines()
                   if line.startswith("{") and '"event": "result"' in line]
        return r, results[-1] if results else {}
