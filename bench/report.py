"""Targets, the summary table and bench/RESULTS.md from the measured series."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .context import Ctx
from .measure import Run, Series, median, spread
from .profiling import trim

MB = 1e6
SRC, TGT, SMALL, MINIO = "documentdb source", "documentdb target", "documentdb 1x", "minio"
V1_SRC, V1_TGT = "ferretdb v1 source", "ferretdb v1 target"
RSS_LIMIT = 100 * 2**20


@dataclass
class Target:
    name: str
    ours: str
    theirs: str
    ratio: float | None           # None: not measurable
    goal: str
    met: bool | None              # None: not measurable
    note: str = ""

    @property
    def status(self) -> str:
        if self.met is None:
            return "reported" if self.ratio is not None else "not measurable"
        return "met" if self.met else "MISSED"

    @property
    def ratio_text(self) -> str:
        return "n/a" if self.ratio is None or math.isnan(self.ratio) else f"{self.ratio:.2f}x"


def _bson(ctx: Ctx, series: str) -> int:
    runs = ctx.s(series).runs
    return runs[0].extra.get("bson", 0) if runs else 0


def _mbps(nbytes: float, seconds: float) -> float:
    return nbytes / MB / seconds if seconds and seconds > 0 else float("nan")


def _t(s: Series) -> str:
    return f"{s.wall:.2f} s" if s.measured else "n/a"


def _speed_target(ctx: Ctx, name: str, ours: str, theirs: str, nbytes: int, goal: str = ">= 1.0x") -> Target:
    o, t = ctx.s(ours), ctx.s(theirs)
    ours_txt = f"{_t(o)} ({_mbps(nbytes, o.wall):.1f} MB/s)" if o.measured else "n/a"
    if not t.measured:
        return Target(name, ours_txt, t.missing or "n/a", None, goal, None)
    ratio = t.wall / o.wall
    return Target(name, ours_txt, f"{_t(t)} ({_mbps(nbytes, t.wall):.1f} MB/s)", ratio, goal, ratio >= 1.0)


def _ratio_target(name: str, ours: Series, ref: Series, goal: str, ok, ours_txt: str = "", ref_txt: str = "",
                  ratio: float | None = None) -> Target:
    if not (ours.measured and ref.measured):
        return Target(name, ours_txt or _t(ours), ref.missing or ours.missing or "n/a", None, goal, None)
    r = ref.wall / ours.wall if ratio is None else ratio
    return Target(name, ours_txt or _t(ours), ref_txt or _t(ref), r, goal, ok(r) if ok else None)


def verify_cost(ctx: Ctx) -> tuple[float, float] | None:
    """(seconds the full read-back adds to a restore, a bare raw read of the just inserted data)"""
    full, counts, fresh = ctx.s("restore_ours"), ctx.s("restore_ours_counts"), ctx.s("read_raw_fresh")
    if not (full.measured and counts.measured and fresh.measured):
        return None
    return max(0.0, full.wall - counts.wall), fresh.wall


def targets(ctx: Ctx) -> list[Target]:
    big, small = _bson(ctx, "dump_ours"), _bson(ctx, "dump_ours_xz") or _bson(ctx, "dump_ours_1x")
    art = ctx.facts.get("artifacts", {})
    art = art.get("bytes", 0) if isinstance(art, dict) else 0
    s = ctx.s
    rows = [
        _speed_target(ctx, "Dump, zstd -3 (vs mongodump --archive | zstd -3 -T0)", "dump_ours",
                      "dump_mongodump_zstd", big),
        _ratio_target("Dump vs the bare raw read (4 threads, server's limit)", s("dump_ours"), s("read_raw_par"),
                      ">= 0.95x", lambda r: r >= 0.95),
    ]
    d, m = s("dump_ours"), s("dump_mongodump_zstd")
    if d.measured and m.measured:
        their_rss = max(r.tree_rss for r in m.runs) or m.maxrss
        rows.append(Target("Dump CPU and peak memory (vs mongodump | zstd, whole pipeline)",
                           f"{d.cpu:.1f} s CPU, {d.maxrss / 2**20:.0f} MiB",
                           f"{m.cpu:.1f} s CPU, {their_rss / 2**20:.0f} MiB", m.cpu / d.cpu if d.cpu else None,
                           "less CPU and memory", d.cpu < m.cpu and d.maxrss < their_rss))
    rows.append(_speed_target(ctx, "Dump, xz -6, 1x data (vs mongodump --archive | xz -6 -T0)", "dump_ours_xz",
                              "dump_mongodump_xz", small))
    rc, rf, mr, ins = s("restore_ours_counts"), s("restore_ours"), s("restore_mongorestore"), s("insert_raw")
    rows.append(_ratio_target("Restore, --verify counts (vs mongorestore with indexes)", rc, mr, ">= 1.2x",
                              lambda r: r >= 1.2))
    rows.append(_ratio_target("Restore, --verify counts vs the bare raw insert (server's limit)", rc, ins,
                              ">= 0.9x", lambda r: r >= 0.9))
    rows.append(_ratio_target("Restore, --verify full (default; vs mongorestore with indexes)", rf, mr, "-", None))
    vc = verify_cost(ctx)
    if vc:
        added, fresh = vc
        rows.append(Target("Full read-back verification: time added (full - counts) vs a bare raw read of the "
                           "same data", f"+{added:.2f} s", f"raw read {fresh:.2f} s", added / fresh, "<= 1.1x",
                           added / fresh <= 1.1))
    for what, one, ten in (("backup", "dump_ours_1x", "dump_ours"), ("restore", "restore_ours_1x", "restore_ours")):
        a, b = s(one), s(ten)
        if a.measured and b.measured:
            peak = max(a.maxrss, b.maxrss)
            rows.append(Target(f"Peak RSS of {what} (1x and 10x)", f"{peak / 2**20:.0f} MiB", "100 MiB",
                               peak / RSS_LIMIT, "<= 100 MiB", peak <= RSS_LIMIT))
            ratio = b.maxrss / a.maxrss
            rows.append(Target(f"Peak RSS of {what}, 10x data vs 1x", f"10x: {b.maxrss / 2**20:.0f} MiB",
                               f"1x: {a.maxrss / 2**20:.0f} MiB", ratio, "within 20%", abs(ratio - 1.0) <= 0.2))
    r3 = s("restore_s3")
    if r3.measured:
        x = r3.runs[0].extra
        reads = x.get("s3reads", {})
        gets = sum(v["gets"] for v in reads.values())
        got = sum(v["bytes"] for v in reads.values())
        rows.append(Target("Restore from S3: reads of the archive object", f"{gets} GET, {got:,} bytes",
                           f"archive {x.get('archive_size', 0):,} bytes", got / max(1, x.get("archive_size", 1)),
                           "once (1.00x)", gets == 1 and got == x.get("archive_size")))
    rows += [
        _speed_target(ctx, "Artifacts full copy MinIO -> MinIO (vs aws s3 cp --recursive)",
                      "art_s3_ours", "art_s3_aws", art),
        _speed_target(ctx, "Artifacts full copy MinIO -> folder (vs aws s3 cp --recursive)",
                      "art_local_ours", "art_local_aws", art),
    ]
    for where, full, rep in (("MinIO -> MinIO", "art_s3_ours", "art_s3_ours_repeat"),
                             ("MinIO -> folder", "art_local_ours", "art_local_ours_repeat")):
        f, r, fixed = s(full), s(rep), s("art_fixed_ours")
        if f.measured and r.measured:
            ratio = r.wall / f.wall
            net = ""
            if fixed.measured and f.wall > fixed.wall:
                net = (f"; net of the {fixed.wall:.2f} s fixed cost of any backup: "
                       f"{max(0.0, r.wall - fixed.wall) / (f.wall - fixed.wall):.2f}x")
            rows.append(Target(f"Repeat backup, +1% new artifacts, {where} (of the full copy)",
                               f"{r.wall:.2f} s", f"full copy {f.wall:.2f} s{net}", ratio, "<= 0.1x", ratio <= 0.1))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "|")


def summary_table(rows: list[Target], markdown: bool = True) -> str:
    head = ("target", "ours (median)", "theirs / reference", "ratio", "goal", "status")
    body = [(r.name, r.ours, r.theirs, r.ratio_text, r.goal, r.status) for r in rows]
    if markdown:
        body = [tuple(_cell(c) for c in row) for row in body]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *map(line, body)])


def _series_rows(ctx: Ctx, names: list[tuple[str, str]], nbytes: int, servers: list[str]) -> list[str]:
    head = "| what | runs | median wall | min-max | MB/s | process CPU | peak RSS | " + \
           " | ".join(f"{s} CPU" for s in servers) + " | other processes' CPU |"
    out = [head, "|" + "---|" * (8 + len(servers))]
    for key, label, *per_s in names:
        s = ctx.s(key)
        label = _cell(label)
        if not s.measured:
            out.append(f"| {label} | 0 | {_cell(s.missing or 'not run')} |" + " |" * (6 + len(servers)))
            continue
        rate = "-" if per_s and per_s[0] is None else f"{_mbps(nbytes, s.wall):.1f}"
        rss = s.maxrss
        tree = max((r.tree_rss for r in s.runs), default=0)
        rss_txt = f"{rss / 2**20:.0f} MiB" + (f" (tree {tree / 2**20:.0f} MiB)" if tree else "")
        out.append(f"| {label} | {len(s.runs)} | {s.wall:.2f} s | {spread(s.walls)} | "
                   f"{rate} | {s.cpu:.2f} s | {rss_txt} | "
                   + " | ".join(f"{s.server_cpu(x):.1f} s" for x in servers) + f" | {_other(s)} |")
    return out


def _other(s: Series) -> str:
    vals = [r.extra["other_cpu"] for r in s.runs if "other_cpu" in r.extra]
    return f"{median(vals):.1f} s" if vals else "?"


def _kv(d: dict) -> list[str]:
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in d.items()]]


def _cores(ctx: Ctx, s: Series, server: str) -> str:
    """Our process, the server and everything together, in cores on average over the run."""
    n = int(ctx.facts["machine"]["cpus (nproc)"])
    srv = s.server_cpu(server)
    return (f"our process {s.cpu:.1f} s CPU ({s.cpu / s.wall:.2f} cores), the server {srv:.1f} s "
            f"({srv / s.wall:.2f} cores), together {(s.cpu + srv) / s.wall:.2f} of the {n} cores")


def _bottleneck(ctx: Ctx) -> list[str]:
    out = []
    s = ctx.s
    d, rr, m = s("dump_ours"), s("read_raw_par"), s("dump_mongodump_zstd")
    if d.measured and rr.measured:
        out.append(f"- **Dump**: `mender-backup backup` {d.wall:.1f} s: {_cores(ctx, d, SRC)}. The bare raw read "
                   f"(4 threads, nothing hashed, compressed or written) {rr.wall:.1f} s: {_cores(ctx, rr, SRC)}."
                   + (f" `mongodump | zstd` {m.wall:.1f} s: the pipeline {m.cpu:.1f} s CPU, the server "
                      f"{m.server_cpu(SRC):.1f} s." if m.measured else ""))
    ins, fresh, rc, rf, mr = s("insert_raw"), s("read_raw_fresh"), s("restore_ours_counts"), s("restore_ours"), \
        s("restore_mongorestore")
    if ins.measured and rc.measured:
        out.append(f"- **Restore**: the bare raw insert {ins.wall:.1f} s: {_cores(ctx, ins, TGT)}. "
                   f"`restore --verify counts` {rc.wall:.1f} s: {_cores(ctx, rc, TGT)}. `restore` (full) "
                   f"{rf.wall:.1f} s: {_cores(ctx, rf, TGT)}."
                   + (f" The bare raw read of the just inserted data {fresh.wall:.1f} s: {_cores(ctx, fresh, TGT)}."
                      if fresh.measured else "")
                   + (f" `mongorestore` {mr.wall:.1f} s: the pipeline {mr.cpu:.1f} s CPU, the server "
                      f"{mr.server_cpu(TGT):.1f} s." if mr.measured else ""))
    a, aw = s("art_s3_ours"), s("art_s3_aws")
    if a.measured and aw.measured:
        out.append(
            f"- **Artifacts MinIO -> MinIO** (server-side copies for both tools): our process used "
            f"{a.cpu:.1f} s of CPU for {ctx.facts['artifacts']['objects']} objects, the aws cli {aw.cpu:.1f} s; "
            f"MinIO {a.server_cpu(MINIO):.1f} s vs {aw.server_cpu(MINIO):.1f} s.")
    return out


BEFORE_AFTER = [
    ("dump_ours", "`mender-backup backup` (zstd), 10x data"),
    ("restore_ours", "`mender-backup restore`, 10x data"),
    ("restore_ours_counts", "`mender-backup restore --verify counts`, 10x data"),
    ("dump_ours_xz", "`mender-backup backup --compression xz`, 1x data"),
    ("art_s3_ours", "artifacts full copy MinIO -> MinIO"),
    ("art_s3_aws", "  (aws s3 cp, same runs)"),
    ("art_local_ours", "artifacts full copy MinIO -> folder"),
    ("art_local_aws", "  (aws s3 cp, same runs)"),
    ("art_fixed_ours", "backup without artifacts (fixed cost)"),
    ("art_s3_ours_repeat", "repeat after +1%, MinIO -> MinIO"),
    ("art_local_ours_repeat", "repeat after +1%, MinIO -> folder"),
    ("dump_ours_1x", "`mender-backup backup`, 1x data"),
    ("restore_ours_1x", "`mender-backup restore`, 1x data"),
]


def _code_text(c: dict) -> str:
    if not c:
        return "?"
    head = c.get("head_start", "?")
    if c.get("head_end") and c["head_end"] != head:
        head += f" .. {c['head_end']} (changed during the run)"
    dirty = c.get("backup_dirty") or []
    return head + (f", uncommitted changes in {', '.join(dirty)}" if dirty else "")


def _before_after(before: Ctx, after: Ctx) -> list[str]:
    out = ["## Before / after", "",
           f"The same bench on the code before a change (commit {_code_text(before.facts.get('code', {}))}; "
           f"{before.facts.get('code', {}).get('note', '')}) and on the code measured above "
           f"(commit {_code_text(after.facts.get('code', {}))}). Medians. The aws rows (the same program "
           "both times) show how much the machine itself differed between the two runs: the before run "
           "overlapped other users' test runs on this shared machine (its \"other processes' CPU\" was not "
           "recorded yet), which also slowed its FerretDB-bound dump and restore.", "",
           "| what | before: wall | after: wall | before: process CPU | after: process CPU | "
           "before: peak RSS | after: peak RSS |", "|---|---|---|---|---|---|---|"]
    for key, label in BEFORE_AFTER:
        b, a = before.s(key), after.s(key)
        if not (b.measured and a.measured):
            continue
        out.append(f"| {_cell(label)} | {b.wall:.2f} s | {a.wall:.2f} s ({a.wall / b.wall:.2f}x) | {b.cpu:.2f} s | "
                   f"{a.cpu:.2f} s | {b.maxrss / 2**20:.0f} MiB | {a.maxrss / 2**20:.0f} MiB |")
    before_rows = {r.name: r for r in targets(before)}
    out += ["", "Targets before the change:", "", "| target | before | status before |", "|---|---|---|"]
    for name, r in before_rows.items():
        if r.met is not None:
            out.append(f"| {_cell(name)} | {r.ratio_text} | {r.status} |")
    if before.facts.get("profiles"):
        out += ["", "Profiles of the before run (what the changes were made from):", ""]
        for p in before.facts["profiles"]:
            out.append(f"- {p['title']}: {p.get('summary', '')}")
    return out + [""]


def _data(ctx: Ctx) -> list[str]:
    f = ctx.facts
    big, small = _bson(ctx, "dump_ours"), _bson(ctx, "dump_ours_1x")
    v1 = _bson(ctx, "v1_dump_ours")
    art = f.get("artifacts", {})
    runs = ctx.s("dump_ours").runs
    archive = runs[0].extra.get("archive", 0) if runs else 0
    left = f.get("big", {}).get("left_out") or []
    out = [
        f"- **DocumentDB** (the main MongoDB here) holds the Mender data set of `testenv.mender_data.seed_mongo` "
        f"(Mender's databases, collections and indexes): **scale {f['big']['scale']}**: {f['big']['documents']:,} "
        f"documents, **{big / MB:.1f} MB of BSON** (the manifest's per-collection sizes), zstd archive "
        f"{archive / MB:.1f} MB ({big / max(archive, 1):.1f}:1); seeded in {f['big']['seed_seconds']} s, then read "
        f"once unmeasured (PostgreSQL's first read of new rows writes their visibility hints). The \"10x\" set.",
        f"- The \"1x\" set: scale {f['small']['scale']}, {f['small']['documents']:,} documents, "
        f"{small / MB:.1f} MB of BSON, on a DocumentDB of its own (memory comparison, xz, the restore from S3).",
    ]
    if left:
        out.append(f"- Left out of both: {', '.join(left)}. DocumentDB builds and checks unique indexes of more "
                   "than one field in time quadratic in the documents (5,000 auth_sets 2 s, 10,000 7 s, 20,000 "
                   "29 s, measured): at 1 GiB that is hours for either tool. The tests keep them.")
    if v1:
        out.append(f"- FerretDB v1 (SQLite), the second table: scale {f['v1']['scale']}, {f['v1']['documents']:,} "
                   f"documents, {v1 / MB:.1f} MB of BSON (FerretDB v1's data shape: without TTL, partial and text "
                   f"indexes, decimal128 and dotted field names).")
    if art:
        out.append(f"- Artifacts: {art.get('objects', 0):,} objects, {art.get('bytes', 0) / MB:.0f} MB "
                   f"({art.get('multipart_objects', 0)} over 8 MiB; median {art.get('median', 0) / 1024:.0f} KiB, "
                   f"largest {art.get('largest', 0) / 2**20:.1f} MiB); mix: {art.get('mix', '')}. The repeat "
                   f"backup adds {art.get('new_for_repeat', 0)} new objects (1%) of the same mix.")
    return out


def results_md(ctx: Ctx, rows: list[Target], total_seconds: float, findings: str,
               before: Ctx | None = None) -> str:
    f = ctx.facts
    big, small = _bson(ctx, "dump_ours"), _bson(ctx, "dump_ours_1x")
    xz_bson = _bson(ctx, "dump_ours_xz") or small
    art = f.get("artifacts", {})
    lines = [
        "# mender-backup benchmarks",
        "",
        f"Generated by `{'python -m bench.run --quick' if ctx.quick else 'make bench'}` "
        f"(`python -m bench.run`) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"the whole run took {total_seconds / 60:.1f} minutes. "
        f"{ctx.runs} run(s) of each measurement, medians reported; every measured command is its own "
        "process, timed from outside (wall time; CPU time and peak RSS from `wait4`; a shell pipeline's CPU "
        "is all its programs', its memory the sampled sum of their RSS, \"tree\"). A server's CPU is that of "
        "its whole process tree, read from /proc around each command (DocumentDB: FerretDB v2 plus the "
        "PostgreSQL postmaster and every backend, including those that exited meanwhile). Each command "
        "starts after `sync`, and the order of ours and theirs rotates from run to run. Throughput is MB "
        "(10^6 bytes) of source BSON per second of wall time. Speed ratios are *their (or the limit's) "
        "time / our time*: above 1.0 we are faster. \"Other processes' CPU\" is what the machine spent "
        "meanwhile on anything else (other users of this shared machine): where it is large, that run "
        "competed for the cores.",
        "",
        "## Summary",
        "",
        summary_table(rows),
        "",
        "## Machine",
        "",
        f"mender-backup measured: commit {_code_text(f.get('code', {}))}.",
        "",
        *_kv({**f["machine"], **({"load average (1 min) at start / end": " / ".join(
            f"{x:.2f}" for x in f["load"])} if f.get("load") else {})}),
        "",
        "## Versions",
        "",
        *_kv(f["versions"]),
        "",
        "## Data",
        "",
        *_data(ctx),
        "",
        "## Dump (DocumentDB, 10x data)",
        "",
        *_series_rows(ctx, [("dump_ours", "`mender-backup backup` (zstd -3, one thread)"),
                            ("dump_mongodump_zstd", "`mongodump --archive | zstd -3 -T0`"),
                            ("read_raw_par", "the server's limit: bare raw read (`find_raw_batches`, 4 threads, "
                                             "batches of 1000, nothing hashed or written)")],
                      big, [SRC]),
        "",
        "## Dump with xz (DocumentDB, 1x data)",
        "",
        "Both preset 6 with one thread per core (`xz -T0`); ours cuts the stream into 24 MiB blocks as "
        "`xz -T0` does, each compressed by its own thread.",
        "",
        *_series_rows(ctx, [("dump_ours_xz", "`mender-backup backup --compression xz`"),
                            ("dump_mongodump_xz", "`mongodump --archive | xz -6 -T0`")], xz_bson, [SMALL]),
        "",
        "## Restore (DocumentDB, 10x data)",
        "",
        "Into an empty DocumentDB (every database dropped before each run). `mender-backup restore` proves the "
        "archive (sha256), inserts, checks each collection as soon as its inserts are acknowledged (full: reads "
        "every document back and compares count and content digest with the manifest; counts: the server's "
        "count), builds its indexes right after (no oplog here), in parallel with the other collections' "
        "inserts. mongorestore inserts, then builds the indexes; it checks the counts of the inserts it sent.",
        "",
        *_series_rows(ctx, [("restore_ours", "`mender-backup restore` (--verify full, the default)"),
                            ("restore_ours_counts", "`mender-backup restore --verify counts`"),
                            ("restore_mongorestore", "`zstd -dc | mongorestore --archive` (with indexes)"),
                            ("insert_raw", "the server's limit: bare raw `insert_many` of RawBSONDocument "
                                           "batches, 4 workers, no checks, no indexes"),
                            ("read_raw_fresh", "the server's limit: bare raw read of the data just inserted, "
                                               "4 threads")],
                      big, [TGT]),
        "",
        "## Where the time goes (server vs our process)",
        "",
        *_bottleneck(ctx),
        "",
        *_s3(ctx),
        "## FerretDB v1 (SQLite), second table",
        "",
        "FerretDB v1 refuses the `ns` option mongorestore sends in every index spec (`Index option \"ns\" is "
        "unknown`), so mongorestore runs with `--noIndexRestore`, and the same index builds (one createIndexes per "
        "collection, without `ns`) are timed on their own right after: add the two for mongorestore's whole work.",
        "",
        *_series_rows(ctx, [("v1_dump_ours", "`mender-backup backup` (zstd)"),
                            ("v1_dump_mongodump_zstd", "`mongodump --archive | zstd -3 -T0`"),
                            ("v1_read_raw", "bare raw read, 4 threads"),
                            ("v1_restore_ours", "`mender-backup restore` (--verify full)"),
                            ("v1_restore_mongorestore", "`mongorestore --archive --noIndexRestore`"),
                            ("v1_mongorestore_indexes", "+ the same index builds, on their own"),
                            ("v1_insert_raw", "bare raw insert_many, 4 workers")],
                      _bson(ctx, "v1_dump_ours"), [V1_SRC, V1_TGT]),
        "",
        "## Artifacts",
        "",
        "`mender-backup backup --db benchtiny --artifacts-bucket ...`: the MongoDB part is one document, "
        "so the time is the artifact copy plus start-up (the fixed cost row: the same command without "
        "artifacts). MinIO -> MinIO is a server-side copy for both tools (same endpoint and keys). "
        "MinIO -> folder: `-d file:///...` (each file written to a temporary name and renamed, all made "
        "durable before the manifest) vs `aws s3 cp --recursive s3://... DIR` (no fsync).",
        "",
        *_series_rows(ctx, [("art_s3_ours", "`mender-backup backup`, full, MinIO -> MinIO"),
                            ("art_s3_aws", "`aws s3 cp --recursive`, MinIO -> MinIO"),
                            ("art_local_ours", "`mender-backup backup`, full, MinIO -> folder"),
                            ("art_local_aws", "`aws s3 cp --recursive`, MinIO -> folder"),
                            ("art_fixed_ours", "`mender-backup backup` without artifacts (fixed cost)", None),
                            ("art_s3_ours_repeat", "`mender-backup backup` again after +1%, MinIO -> MinIO", None),
                            ("art_local_ours_repeat", "`mender-backup backup` again after +1%, MinIO -> folder", None),
                            ("art_s3_aws_sync", "for reference: `aws s3 sync` after +1%, MinIO -> MinIO", None),
                            ("art_local_aws_sync", "for reference: `aws s3 sync` after +1%, MinIO -> folder", None)],
                      art.get("bytes", 0) if isinstance(art, dict) else 0, [MINIO]),
        "",
        "## Memory",
        "",
        "Peak RSS (`ru_maxrss` of the process) of `mender-backup backup` and `restore`, 1x vs 10x data:",
        "",
        "| | 1x | 10x | ratio |",
        "|---|---|---|---|",
    ]
    for what, one, ten in (("backup", "dump_ours_1x", "dump_ours"), ("restore", "restore_ours_1x", "restore_ours")):
        a, b = ctx.s(one), ctx.s(ten)
        if a.measured and b.measured:
            lines.append(f"| {what} | {a.maxrss / 2**20:.0f} MiB ({small / MB:.1f} MB BSON, {a.wall:.1f} s) | "
                         f"{b.maxrss / 2**20:.0f} MiB ({big / MB:.1f} MB BSON, {b.wall:.1f} s) | "
                         f"{b.maxrss / a.maxrss:.2f}x |")
    lines += ["", *_costs(ctx)]
    if before is not None:
        lines += ["", *_before_after(before, ctx)]
    prof = f.get("profiles")
    if prof:
        lines += ["", "## Profiles", "",
                  "pyinstrument samples the main thread: for the restore, its phases (the pools' work shows "
                  "as the main thread's waits).", ""]
        for p in prof:
            lines += [f"### {p['title']}", "", p.get("summary", ""), ""]
            if p.get("text"):
                excerpt = trim(p["text"], min_share=0.02, max_lines=30, max_depth=7, start_at=p["excerpt_from"])
                lines += ["```", excerpt.rstrip(), "```", ""]
    if findings:
        lines += ["", findings.rstrip()]
    return "\n".join(lines) + "\n"


def _s3(ctx: Ctx) -> list[str]:
    r = ctx.s("restore_s3")
    if not r.measured:
        return []
    x = r.runs[0].extra
    reads = "; ".join(f"`{k}`: {v['gets']} GET, {v['bytes']:,} bytes" for k, v in x.get("s3reads", {}).items())
    return ["## Restore from S3", "",
            f"A backup of the 1x set to MinIO, restored from there (`python -m bench.s3reads`: the tool with "
            f"every S3 object read counted). The archive object is {x.get('archive_size', 0):,} bytes; the "
            f"restore read: {reads or 'nothing'} ({r.wall:.1f} s, peak RSS {r.maxrss / 2**20:.0f} MiB). It is "
            f"hashed while it streams into a temporary file (TMPDIR), which the restore then reads.", ""]


def _costs(ctx: Ctx) -> list[str]:
    """CPU per MB of BSON of each compression, as our backups measured it (whole process)."""
    out = []
    for key, what, nbytes in (("dump_ours", "zstd -3 (one thread), 10x data", _bson(ctx, "dump_ours")),
                              ("dump_ours_1x", "zstd -3 (one thread), 1x data", _bson(ctx, "dump_ours_1x")),
                              ("dump_ours_xz", "xz -6 (a thread per core), 1x data", _bson(ctx, "dump_ours_xz")),
                              ("dump_ours_gzip", "gzip -6, 1x data", _bson(ctx, "dump_ours_gzip")),
                              ("dump_ours_none", "none, 1x data", _bson(ctx, "dump_ours_none"))):
        s = ctx.s(key)
        if s.measured and nbytes:
            archive = s.runs[0].extra.get("archive", 0)
            out.append(f"| {what} | {1000 * s.cpu / (nbytes / MB):.1f} ms | "
                       f"{nbytes / max(archive, 1):.1f}:1 | {nbytes / MB / s.wall:.1f} MB/s |")
    if not out:
        return []
    return ["Whole backup process, CPU per MB of BSON (reading, hashing, CRC, compressing, writing):", "",
            "| compression | CPU per MB | ratio | throughput |", "|---|---|---|---|", *out]


def save_state(ctx: Ctx, total_seconds: float, path: Path) -> None:
    """The measurements as JSON (without the commands' output), so RESULTS.md can be
    rendered again (`python -m bench.run --render`) without measuring again."""
    series = {name: {"missing": s.missing,
                     "runs": [{k: v for k, v in asdict(r).items() if k not in ("stdout", "stderr")} for r in s.runs]}
              for name, s in ctx.series.items()}
    path.write_text(json.dumps({"quick": ctx.quick, "runs": ctx.runs, "total_seconds": total_seconds,
                                "facts": ctx.facts, "series": series}, indent=1, default=str) + "\n")


def load_state(path: Path) -> tuple[Ctx, float]:
    d = json.loads(path.read_text())
    ctx = Ctx(path.parent, d["quick"], d["runs"], facts=d["facts"])
    for name, s in d["series"].items():
        ctx.series[name] = Series(name, [Run(**r) for r in s["runs"]], s["missing"])
    return ctx, d["total_seconds"]
