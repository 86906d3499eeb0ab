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
SRC, TGT, SMALL, MINIO = "ferretdb source", "ferretdb target", "ferretdb 1x", "minio"


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
            return "not measurable"
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


def targets(ctx: Ctx) -> list[Target]:
    big = _bson(ctx, "dump_ours")
    art = ctx.facts.get("artifacts", {}).get("bytes", 0)
    rows = [
        _speed_target(ctx, "Dump, zstd (vs mongodump --archive | zstd)", "dump_ours", "dump_mongodump_zstd", big),
        _speed_target(ctx, "Restore (vs mongorestore --archive)", "restore_ours", "restore_mongorestore", big),
        _speed_target(ctx, "Artifacts full copy MinIO -> MinIO (vs aws s3 cp --recursive)",
                      "art_s3_ours", "art_s3_aws", art),
        _speed_target(ctx, "Artifacts full copy MinIO -> folder (vs aws s3 cp --recursive)",
                      "art_local_ours", "art_local_aws", art),
    ]
    if ctx.s("dump_ours_xz").measured or ctx.s("dump_mongodump_xz").missing:
        rows.insert(1, _speed_target(ctx, "Dump, xz (vs mongodump --archive | xz)", "dump_ours_xz",
                                     "dump_mongodump_xz", big))
    for where, full, rep in (("MinIO -> MinIO", "art_s3_ours", "art_s3_ours_repeat"),
                             ("MinIO -> folder", "art_local_ours", "art_local_ours_repeat")):
        f, r, fixed = ctx.s(full), ctx.s(rep), ctx.s("art_fixed_ours")
        if f.measured and r.measured:
            ratio = r.wall / f.wall
            net = ""
            if fixed.measured and f.wall > fixed.wall:
                net = (f"; net of the {fixed.wall:.2f} s fixed cost of any backup: "
                       f"{max(0.0, r.wall - fixed.wall) / (f.wall - fixed.wall):.2f}x")
            rows.append(Target(f"Repeat backup, +1% new artifacts, {where} (of the full copy)",
                               f"{r.wall:.2f} s", f"full copy {f.wall:.2f} s{net}", ratio, "<= 0.1x", ratio <= 0.1))
    for what, one, ten in (("backup", "dump_ours_1x", "dump_ours"), ("restore", "restore_ours_1x", "restore_ours")):
        a, b = ctx.s(one), ctx.s(ten)
        if a.measured and b.measured:
            ratio = b.maxrss / a.maxrss
            rows.append(Target(f"Peak RSS of {what}, 10x data vs 1x", f"10x: {b.maxrss / 2**20:.0f} MiB",
                               f"1x: {a.maxrss / 2**20:.0f} MiB", ratio, "within 20% (<= 1.2x)",
                               abs(ratio - 1.0) <= 0.2 or ratio < 1.0))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


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


def _bottleneck(ctx: Ctx) -> list[str]:
    out = []
    d, rr, seq = ctx.s("dump_ours"), ctx.s("read_raw_par"), ctx.s("read_raw_seq")
    if d.measured and rr.measured:
        cores = d.server_cpu(SRC) / d.wall
        out.append(
            f"- **Dump**: `mender-backup backup` took {d.wall:.1f} s; the raw read of the same data by pymongo "
            f"with the same 4 threads, writing nothing and hashing nothing, took {rr.wall:.1f} s "
            f"({seq.wall:.1f} s with 1 thread). Our process used {d.cpu:.1f} s of CPU "
            f"({100 * d.cpu / d.wall:.0f}% of one core), FerretDB {d.server_cpu(SRC):.1f} s "
            f"({cores:.2f} of the {ctx.facts['machine']['cpus (nproc)']} cores on average). "
            f"FerretDB is the bottleneck: ours runs at {rr.wall / d.wall:.2f}x the speed of the bare read.")
    ins, r = ctx.s("insert_raw"), ctx.s("restore_ours")
    if ins.measured and r.measured:
        out.append(
            f"- **Restore**: `mender-backup restore` took {r.wall:.1f} s. Bare `insert_many` of the same "
            f"documents (4 workers, no checks, no indexes) took {ins.wall:.1f} s into the same empty server; "
            f"the restore also builds the indexes and then reads everything back to verify counts and digests "
            f"(a bare read of the source takes {rr.wall:.1f} s with 4 threads, {seq.wall:.1f} s with 1). "
            f"Our process used {r.cpu:.1f} s of CPU ({100 * r.cpu / r.wall:.0f}% of one core), the target "
            f"FerretDB {r.server_cpu(TGT):.1f} s ({r.server_cpu(TGT) / r.wall:.2f} cores on average): the "
            f"time is FerretDB's. The restore profile below splits it into phases.")
    a, aw = ctx.s("art_s3_ours"), ctx.s("art_s3_aws")
    if a.measured and aw.measured:
        out.append(
            f"- **Artifacts MinIO -> MinIO** (server-side copies for both tools): our process used "
            f"{a.cpu:.1f} s of CPU for {ctx.facts['artifacts']['objects']} objects, the aws cli {aw.cpu:.1f} s; "
            f"MinIO {a.server_cpu(MINIO):.1f} s vs {aw.server_cpu(MINIO):.1f} s. Here the client's own CPU "
            f"matters: on {ctx.facts['machine']['cpus (nproc)']} cores every CPU second the client spends is "
            f"taken from MinIO.")
    return out


BEFORE_AFTER = [
    ("dump_ours", "`mender-backup backup` (zstd), 10x data"),
    ("restore_ours", "`mender-backup restore`, 10x data"),
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


def results_md(ctx: Ctx, rows: list[Target], total_seconds: float, findings: str,
               before: Ctx | None = None) -> str:
    f = ctx.facts
    big, small = _bson(ctx, "dump_ours"), _bson(ctx, "dump_ours_1x")
    art = f.get("artifacts", {})
    dump_runs = ctx.s("dump_ours").runs
    archive = dump_runs[0].extra.get("archive", 0) if dump_runs else 0
    lines = [
        "# mender-backup benchmarks",
        "",
        f"Generated by `{'python -m bench.run --quick' if ctx.quick else 'make bench'}` "
        f"(`python -m bench.run`) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"the whole run took {total_seconds / 60:.1f} minutes. "
        f"{ctx.runs} run(s) of each measurement, medians reported; every measured command is its own "
        "process, timed from outside (wall time; CPU time and peak RSS from `wait4`), with the servers' "
        "CPU time (FerretDB, MinIO) read from /proc around it. Each command starts after `sync`, and ours "
        "and theirs alternate in order from run to run. Throughput is MB (10^6 bytes) of source BSON "
        "(dump, restore) or of artifact bytes per second of wall time. Speed ratios are "
        "*their time / our time*: above 1.0 we are faster. \"Other processes' CPU\" is what the "
        "machine spent meanwhile on anything but the measured command and the servers (other users "
        "of a shared machine): where it is large, that run competed for the cores.",
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
        f"- MongoDB (FerretDB v1, SQLite) holds the realistic Mender data set of `tests.mender_data.seed_mongo` "
        f"(7 databases, 14 collections with Mender's indexes): **scale {f['big']['scale']}**: "
        f"{f['big']['documents']:,} documents, **{big / MB:.1f} MB of BSON** (the manifest's per-collection "
        f"sizes), zstd archive {archive / MB:.1f} MB ({big / max(archive, 1):.1f}:1). Seeding took "
        f"{f['big']['seed_seconds']} s. This is the \"10x\" data set of the memory comparison.",
        f"- The \"1x\" data set (memory comparison): scale {f['small']['scale']}, {f['small']['documents']:,} "
        f"documents, {small / MB:.1f} MB of BSON, on a FerretDB of its own.",
        f"- Artifacts: {art.get('objects', 0):,} objects, {art.get('bytes', 0) / MB:.0f} MB "
        f"({art.get('multipart_objects', 0)} over 8 MiB; median {art.get('median', 0) / 1024:.0f} KiB, "
        f"largest {art.get('largest', 0) / 2**20:.1f} MiB); mix: {art.get('mix', '')}. The repeat backup "
        f"adds {art.get('new_for_repeat', 0)} new objects (1%) of the same mix. "
        "The mix of `tests.mender_data.seed_bucket` (25% up to 2 MiB, 5% of 9-12 MiB) would make 2,000 objects "
        "about 1.6 GB, too long for the time budget of a run on this machine.",
    ]
    if f.get("scale_note"):
        lines += ["", f"**Why not 1 GiB of BSON:** {f['scale_note']}"]
    lines += [
        "",
        "## Dump",
        "",
        *_series_rows(ctx, [("dump_ours", "`mender-backup backup` (zstd)"),
                            ("dump_mongodump_zstd", "`mongodump --archive | zstd`"),
                            ("dump_ours_xz", "`mender-backup backup --compression xz`"),
                            ("dump_mongodump_xz", "`mongodump --archive | xz`"),
                            ("read_raw_par", "raw read baseline: `find_raw_batches`, 4 threads, nothing written"),
                            ("read_raw_seq", "raw read baseline: `find_raw_batches`, 1 thread")],
                      big, [SRC]),
        "",
        "## Restore",
        "",
        "Into an empty FerretDB (every database dropped before each run). `mender-backup restore` checks the "
        "archive's sha256, inserts, builds the indexes, then reads everything back and compares counts and "
        "digests with the manifest.",
        "",
        *_series_rows(ctx, [("restore_ours", "`mender-backup restore`"),
                            ("restore_mongorestore", "`zstd -dc | mongorestore --archive`"),
                            ("insert_raw", "raw insert baseline: `insert_many` of RawBSONDocument batches, "
                                           "4 workers, no checks, no indexes")],
                      big, [TGT]),
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
                      art.get("bytes", 0), [MINIO]),
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
            lines.append(f"| {what} | {a.maxrss / 2**20:.0f} MiB ({_bson(ctx, 'dump_ours_1x') / MB:.1f} MB BSON, "
                         f"{a.wall:.1f} s) | {b.maxrss / 2**20:.0f} MiB ({big / MB:.1f} MB BSON, {b.wall:.1f} s) | "
                         f"{b.maxrss / a.maxrss:.2f}x |")
    lines += ["", "## Where the time goes (FerretDB vs our code)", "", *_bottleneck(ctx)]
    if before is not None:
        lines += ["", *_before_after(before, ctx)]
    prof = f.get("profiles")
    if prof:
        lines += ["", "## Profiles", "",
                  "pyinstrument (it samples the main thread) for the artifact copy, with two harnesses for "
                  "what the copy threads do, and for the restore.", ""]
        for p in prof:
            lines += [f"### {p['title']}", "", p.get("summary", ""), ""]
            if p.get("text"):
                # the top of the profile tree, from the named frame on (the full condensed tree,
                # frames over 0.5% of the time, is in results.json)
                excerpt = trim(p["text"], min_share=0.02, max_lines=30, max_depth=7, start_at=p["excerpt_from"])
                lines += ["```", excerpt.rstrip(), "```", ""]
    if findings:
        lines += ["", findings.rstrip()]
    return "\n".join(lines) + "\n"


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
