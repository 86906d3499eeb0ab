"""Profiles for the targets a run misses (pyinstrument), as separate processes.

pyinstrument samples one thread. The artifact copy runs in 16 worker threads while
the main thread waits, so besides the whole command (`pyinstrument mender-backup ...`)
two harnesses look at what each worker does:

  python -m bench.profiling copy --source-bucket B --dest URL --objects N --out FILE
      copies N artifacts one after another with the tool's own `artifacts._copy_one`
      and stores (built exactly as `mender-backup backup` builds them), under pyinstrument
  python -m bench.profiling clients --threads N
      what the per-thread boto3 clients of `S3Store.client` cost: one per worker thread,
      as the copy pool creates them, against one shared client
  python -m bench.profiling summarize SESSION.pyisession --out TEXT --phase NAME...
      a whole-command profile as text, and the time under each named function

Both read the S3 settings from the environment (AWS_*), like the tool.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# functions whose (outermost) time the copy harness reports, by name
HOTSPOTS = {
    "boto3 S3.copy (managed copy), in all": ("S3.copy",),
    "  its TransferManager set-up (one per object)": ("create_transfer_manager",),
    "  its executor threads started (per object)": ("ThreadPoolExecutor._adjust_thread_count",),
    "  waiting for HeadObject + CopyObject in the transfer's threads": ("TransferFuture.result",),
    "  TransferManager shut-down (per object)": ("TransferManager.__exit__", "TransferManager.shutdown"),
    "S3 requests sent by _copy_one itself (copy_object, get_object)": ("S3._api_call",),
    "get_object request": ("S3Store.open_read",),
    "reading the body": ("_S3Reader.readinto",),
    "os.fsync": ("fsync",),
}


def _frames_matching(frame, names: tuple[str, ...]):
    """Outermost frames whose function (or Class.function) is in names."""
    fn = frame.function or ""
    cls = getattr(frame, "class_name", None)
    if fn in names or (cls and f"{cls}.{fn}" in names):
        yield frame
        return
    for child in frame.children:
        yield from _frames_matching(child, names)


def trim(text: str, min_share: float = 0.03, max_lines: int = 32, max_depth: int = 16,
         start_at: str = "") -> str:
    """The top of a pyinstrument text tree: frames over min_share of the total, not too deep;
    from the first frame containing `start_at` on, if given (its indentation is removed)."""
    out, total, cut = [], None, None
    for line in text.splitlines():
        m = re.match(r"^([\s|`\-\u2500-\u257f]*)(\d+\.\d+) (.+)$", line)
        if not m:
            continue
        if start_at and cut is None:
            if start_at not in m.group(3):
                continue
            cut = len(m.group(1))
        elif cut is not None and len(m.group(1)) <= cut:
            break                   # out of the subtree that starts at `start_at`
        t = float(m.group(2))
        total = t if total is None else total
        if "[self]" in m.group(3) or t < min_share * total or len(m.group(1)) - (cut or 0) > 3 * max_depth:
            continue
        out.append(line.rstrip()[cut or 0:])
        if len(out) >= max_lines:
            break
    return "\n".join(out)


def hotspots(session) -> dict[str, float]:
    root = session.root_frame()
    out = {}
    for label, names in HOTSPOTS.items():
        out[label] = round(sum(f.time for f in _frames_matching(root, names)), 3) if root else 0.0
    return out


def copy_profile(source_bucket: str, dest: str, n: int, out: Path) -> dict:
    from pyinstrument import Profiler

    from mender_backup.engine import artifacts
    from mender_backup.format.layout import ARTIFACTS
    from mender_backup.engine.settings import Settings
    from mender_backup.stores import S3Store, bucket_store, open_store

    settings = Settings.from_env(os.environ)        # as the CLI reads them: AWS_*, MENDER_BACKUP_DEST_*
    src = bucket_store(source_bucket, settings.source_store)
    dst = open_store(dest, settings.destination_store)
    dst.check()
    objs = sorted(artifacts.inventory(src).values(), key=lambda o: o.key)[:n]
    server_side = isinstance(dst, S3Store) and src.settings.same_service(dst.settings)

    requests: Counter = Counter()
    for s in (src, dst):            # this thread's clients, made before the clock starts
        c = getattr(s, "client", None)
        if c is not None:
            c.meta.events.register("before-call.s3", lambda model, **_: requests.update([model.name]),
                                   unique_id="bench-count")
    threads_started = [0]
    real_start = threading.Thread.start

    def counting_start(self, *a, **kw):
        threads_started[0] += 1
        return real_start(self, *a, **kw)

    threading.Thread.start = counting_start
    prof = Profiler(interval=0.0005)
    t0 = time.perf_counter()
    prof.start()
    try:
        for o in objs:
            artifacts._copy_one(src, o.key, dst, ARTIFACTS + o.key, o.size)
    finally:
        prof.stop()
        threading.Thread.start = real_start
    wall = time.perf_counter() - t0
    out.write_text(prof.output_text(unicode=False, color=False, show_all=False,
                                    processor_options={"filter_threshold": 0.005}))
    full = out.with_suffix(".all.txt")
    full.write_text(prof.output_text(unicode=False, color=False, show_all=True,
                                     processor_options={"filter_threshold": 0.01}))
    return {"objects": len(objs), "bytes": sum(o.size for o in objs), "seconds": round(wall, 3),
            "ms_per_object": round(1000 * wall / max(1, len(objs)), 2), "server_side": server_side,
            "requests_per_object": {k: round(v / max(1, len(objs)), 2) for k, v in sorted(requests.items())},
            "threads_started_per_object": round(threads_started[0] / max(1, len(objs)), 2),
            "hotspots_seconds": hotspots(prof.last_session)}


def summarize(session_path: Path, out: Path, phases: list[str]) -> dict:
    """A whole-command profile (pyinstrument -r pyisession): its text tree to `out`, and the
    time spent under each of `phases` (function or Class.function names)."""
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    session = Session.load(session_path)
    out.write_text(ConsoleRenderer(show_all=True, unicode=False, color=False).render(session))
    root = session.root_frame()
    times = {p: round(sum(f.time for f in _frames_matching(root, (p,))), 2) if root else 0.0 for p in phases}
    return {"seconds": round(session.duration, 2), "cpu_seconds": round(session.cpu_time, 2), "phases": times}


def clients_cost(threads: int) -> dict:
    import psutil

    from mender_backup.stores import StoreAccess, bucket_store

    import boto3  # noqa: F401  (imports are not what is measured)
    import botocore.session  # noqa: F401

    proc = psutil.Process()
    store = bucket_store("probe", StoreAccess())
    rss0, cpu0, t0 = proc.memory_info().rss, time.process_time(), time.perf_counter()
    barrier = threading.Barrier(threads)

    def touch(_):
        barrier.wait()              # every worker thread at once, as in the copy pool
        return id(store.client)

    with ThreadPoolExecutor(threads) as pool:
        ids = set(pool.map(touch, range(threads)))
    per_thread = {"clients": len(ids), "seconds": round(time.perf_counter() - t0, 3),
                  "cpu_seconds": round(time.process_time() - cpu0, 3),
                  "rss_growth_mib": round((proc.memory_info().rss - rss0) / 2**20, 1)}

    rss1, cpu1, t1 = proc.memory_info().rss, time.process_time(), time.perf_counter()
    shared = store.settings.client()
    one = {"clients": 1, "seconds": round(time.perf_counter() - t1, 3),
           "cpu_seconds": round(time.process_time() - cpu1, 3),
           "rss_growth_mib": round((proc.memory_info().rss - rss1) / 2**20, 1)}
    del shared
    return {"per_thread": per_thread, "one_shared": one}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profiling")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("copy")
    c.add_argument("--source-bucket", required=True)
    c.add_argument("--dest", required=True)
    c.add_argument("--objects", type=int, default=200)
    c.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("clients")
    k.add_argument("--threads", type=int, default=16)
    m = sub.add_parser("summarize")
    m.add_argument("session", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--phase", action="append", default=[])
    a = p.parse_args(argv)
    if a.cmd == "copy":
        res = copy_profile(a.source_bucket, a.dest, a.objects, a.out)
    elif a.cmd == "summarize":
        res = summarize(a.session, a.out, a.phase)
    else:
        res = clients_cost(a.threads)
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
