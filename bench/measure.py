"""Timing one process from outside: wall time, CPU time, peak RSS; and the CPU the
servers spent meanwhile (which shows whether FerretDB/MinIO or our process is the
bottleneck)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent          # the venv's bin: mender-backup, aws, pyinstrument
PY = sys.executable


class CommandFailed(RuntimeError):
    pass


@dataclass
class Run:
    """One measured process (or shell pipeline)."""
    label: str
    wall: float                    # seconds
    cpu: float                     # user + system seconds of the process and its waited-for children
    maxrss: int                    # bytes: ru_maxrss from wait4 (for a pipeline: its largest process)
    tree_rss: int = 0              # bytes: peak of the sampled sum over the process tree (pipelines)
    server_cpu: dict[str, float] = field(default_factory=dict)   # server name -> CPU seconds meanwhile
    stdout: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)


def clean_env(extra: dict[str, str] | None = None, workdir: Path | None = None) -> dict[str, str]:
    """The environment a measured command gets: none of the caller's AWS/MongoDB/mender-backup
    settings, no ~/.aws files (both tools read them), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MENDER_BACKUP_", "MONGODB_"))}
    if workdir is not None:
        env["AWS_CONFIG_FILE"] = str(workdir / "no-aws-config")
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(workdir / "no-aws-credentials")
    env.update(extra or {})
    return env


class ServerCPU:
    """CPU seconds used by servers between start() and stop(), each server a process tree
    measured from outside: DocumentDB is FerretDB v2 plus a PostgreSQL postmaster whose
    backends (one per connection) come and go. A tree's CPU is its roots' own, plus what
    their exited children left in the roots' `children_*` times, plus the live children's:
    each process counted once, whether it lived through the whole measurement or not."""

    def __init__(self, servers: dict[str, int | list[int]]):
        self.roots: dict[str, list[psutil.Process]] = {}
        for name, pids in servers.items():
            procs = []
            for pid in (pids if isinstance(pids, list) else [pids]):
                try:
                    procs.append(psutil.Process(pid))
                except psutil.NoSuchProcess:
                    pass
            self.roots[name] = procs
        self._start: dict[str, tuple[float, dict[int, float]]] = {}

    @staticmethod
    def _snap(roots: list[psutil.Process]) -> tuple[float, dict[int, float]]:
        """(the roots' own + reaped children's CPU, live descendant pid -> its CPU)"""
        own, live = 0.0, {}
        for r in roots:
            try:
                t = r.cpu_times()
                own += t.user + t.system + t.children_user + t.children_system
                kids = r.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for k in kids:
                try:
                    kt = k.cpu_times()
                    live[k.pid] = kt.user + kt.system
                except psutil.NoSuchProcess:
                    pass
        return own, live

    def start(self) -> None:
        self._start = {n: self._snap(r) for n, r in self.roots.items()}

    def stop(self) -> dict[str, float]:
        out = {}
        for n, r in self.roots.items():
            (own0, live0), (own1, live1) = self._start.get(n, (0.0, {})), self._snap(r)
            # children gone meanwhile: their whole CPU is now in own1, their part before start in live0
            used = own1 - own0 + sum(v - live0.get(pid, 0.0) for pid, v in live1.items()) \
                - sum(v for pid, v in live0.items() if pid not in live1)
            out[n] = round(max(0.0, used), 2)
        return out


class _TreeSampler(threading.Thread):
    """Samples the summed RSS of a process's descendants every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._halt.is_set():
            total = 0
            try:
                procs = root.children(recursive=True)     # the launcher itself not counted
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def run_cmd(label: str, cmd: list[str] | str, env: dict[str, str], workdir: Path,
            servers: dict[str, int | list[int]] | None = None, shell: bool = False, sample_tree: bool = False,
            timeout: float = 3600, check: bool = True) -> Run:
    """Run `cmd` to completion through bench.launch (see there why); stdout/stderr go to
    files (no pipe can fill up and stall it). The timeout only stops a hung command;
    nothing is asserted about the time."""
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path, stats_path = workdir / "last.stdout", workdir / "last.stderr", workdir / "last.json"
    stats_path.unlink(missing_ok=True)
    argv = ["bash", "-o", "pipefail", "-c", cmd] if shell else list(cmd)
    launcher = [PY, "-m", "bench.launch", str(stats_path), "--", *argv]
    # the launcher must find `bench` whatever the command's environment says
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                               env.get("PYTHONPATH", "")]))}
    cpu = ServerCPU(servers or {})
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        cpu.start()
        busy0 = _busy()
        proc = subprocess.Popen(launcher, stdout=out, stderr=err, env=env, start_new_session=True)
        sampler = _TreeSampler(proc.pid) if sample_tree else None
        if sampler:
            sampler.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
        server_cpu = cpu.stop()
        busy = _busy() - busy0
        tree = sampler.stop() if sampler else 0
    stderr = err_path.read_text(errors="replace")
    shown = cmd if isinstance(cmd, str) else " ".join(cmd)
    if not stats_path.exists():
        raise CommandFailed(f"{label}: `{shown}` did not finish (launcher exit {proc.returncode}):\n{stderr[-3000:]}")
    st = json.loads(stats_path.read_text())
    r = Run(label, st["wall"], st["cpu"], st["maxrss"], tree, server_cpu,
            out_path.read_text(errors="replace"), stderr)
    r.extra["returncode"] = st["returncode"]
    # CPU the whole machine spent meanwhile on anything but this command and the servers:
    # other users' work competing for the same cores (the machine may be shared)
    r.extra["other_cpu"] = round(max(0.0, busy - r.cpu - sum(server_cpu.values())), 2)
    if check and st["returncode"] != 0:
        raise CommandFailed(f"{label}: `{shown}` exited {st['returncode']}:\n{r.stderr[-3000:]}\n{r.stdout[-1000:]}")
    return r


def _busy() -> float:
    """Non-idle CPU seconds of the whole machine so far."""
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)        # our own child's session (start_new_session): nothing else
    except ProcessLookupError:
        pass


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """min-max of the runs, for the table."""
    if len(values) < 2:
        return ""
    return f"{min(values):.2f}-{max(values):.2f}"


@dataclass
class Series:
    """Repeated runs of one measurement."""
    name: str
    runs: list[Run] = field(default_factory=list)
    missing: str = ""              # why it could not be measured

    def add(self, r: Run) -> Run:
        self.runs.append(r)
        return r

    @property
    def measured(self) -> bool:
        return bool(self.runs) and not self.missing

    @property
    def walls(self) -> list[float]:
        return [r.wall for r in self.runs]

    @property
    def wall(self) -> float:
        return median(self.walls)

    @property
    def cpu(self) -> float:
        return median([r.cpu for r in self.runs])

    @property
    def maxrss(self) -> float:
        return median([r.maxrss for r in self.runs])

    def server_cpu(self, name: str) -> float:
        return median([r.server_cpu.get(name, 0.0) for r in self.runs])
