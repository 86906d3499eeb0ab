"""`python -m bench.ab`: each performance change of the bench work against its parent commit,
on the same DocumentDB servers and the same data, the two versions alternating run by run.

Every measured command is `mender-backup` of one commit, taken out of git (`git archive`) and
run with this venv's packages; medians of --runs. The table goes to bench/AB.md, which
bench/FINDINGS.md includes (its AB_TABLE line). Nothing asserts on a timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testenv import mender_data, servers

from .context import Ctx
from .measure import PY
from .mongo_bench import bson_bytes, drop_all, manifest_of, seed

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# (commit, what it changed, what shows it). Each is measured against its parent; the last
# line is the whole branch against where it started.
CHANGES = [
    ("4e2a0e8", "xz as `xz -T0` makes it (24 MiB blocks, a thread per core)", "xz"),
    ("4e9a867", "archive reader: documents found in 1 MiB buffers, a segment one slice", "restore"),
    ("587f4a9", "restore: checks as inserts end, parallel index builds; S3 archive read once", "restore"),
    ("719735e", "dump: largest collection first, zstd in a worker thread, malloc arenas 2", "dump"),
]
WHOLE = ("e18672c", "d08764b")


def _resolve(rev: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def _checkout(rev: str, into: Path) -> Path:
    """The commit's files (no .git), ready to import."""
    into.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["git", "archive", rev, "mender_backup"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    # the package really comes from there, not from the venv's editable install or the cwd
    where = subprocess.run([PY, "-c", f"import sys; sys.path.insert(0, {str(into)!r}); import mender_backup; "
                            "print(mender_backup.__file__)"], capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(into)), where.stdout
    return into


def _cli(code: Path) -> list[str]:
    return [PY, "-c", f"import sys; sys.path.insert(0, {str(code)!r}); sys.argv[0] = 'mender-backup'; "
            "from mender_backup.cli import main; main()"]


class AB:
    def __init__(self, ctx: Ctx, source, target, small):
        self.ctx, self.source, self.target, self.small = ctx, source, target, small
        self.rows: list[dict] = []

    def _backup(self, code: Path, url: str, dest: Path, label: str, series: str | None,
                compression: str = "zstd") -> str:
        shutil.rmtree(dest, ignore_errors=True)
        cmd = [*_cli(code), "backup", "--mongodb-url", url, "-d", f"file://{dest}", "--compression", compression]
        if series:
            self.ctx.measure(series, label, cmd, self.ctx.env())
        else:
            self.ctx.run_unmeasured(cmd)
        return next((dest / "backups").iterdir()).name

    def _restore(self, code: Path, dest: Path, backup_id: str, label: str, series: str) -> None:
        drop_all(self.target.client())
        self.ctx.measure(series, label, [*_cli(code), "restore", backup_id, "--mongodb-url", self.target.url,
                                         "-d", f"file://{dest}"], self.ctx.env())
        drop_all(self.target.client())

    def pair(self, before: str, after: str, what: str, kind: str) -> None:
        ctx = self.ctx
        codes = {v: _checkout(v, ctx.work / "code" / v) for v in (before, after)}
        ctx.log(f"{before} -> {after}: {what} ({kind})")
        kinds = ["dump", "restore"] if kind == "both" else [kind]
        for k in kinds:
            url = self.small.url if k == "xz" else self.source.url
            # the backup whose manifest gives the data's size: the one restored, or the last one made
            dest = ctx.work / f"dest-{before}"
            backup_id = "" if k in ("dump", "xz") else self._backup(codes[before], url, dest, "", None)
            for i in range(ctx.runs):
                order = (before, after) if i % 2 == 0 else (after, before)
                for v in order:
                    series = f"{k}:{before}:{after}:{v}"
                    if k == "restore":
                        self._restore(codes[v], dest, backup_id, f"{v} restore #{i + 1}", series)
                    else:
                        dest = ctx.work / f"dest-{v}"
                        backup_id = self._backup(codes[v], url, dest, f"{v} backup ({k}) #{i + 1}", series,
                                                 "xz" if k == "xz" else "zstd")
            b, a = ctx.s(f"{k}:{before}:{after}:{before}"), ctx.s(f"{k}:{before}:{after}:{after}")
            size = bson_bytes(manifest_of(dest, backup_id))
            self.rows.append({"what": what, "measure": k, "mb": size / 1e6,
                              "before": (b.wall, b.cpu, b.maxrss, b.walls), "after": (a.wall, a.cpu, a.maxrss, a.walls),
                              "commits": (before, after)})

    def table(self) -> str:
        names = {"dump": "backup (zstd -3), 10x-style set", "xz": "backup --compression xz, small set",
                 "restore": "restore (default: --verify full)"}
        out = ["| change | what it changed | measured | MB of BSON | before: wall (min-max), CPU, peak RSS "
               "| after: wall (min-max), CPU, peak RSS | speed-up |",
               "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            (bw, bc, br, bws), (aw, ac, ar, aws) = r["before"], r["after"]

            def cell(w, c, rss, ws):
                return f"{w:.2f} s ({min(ws):.2f}-{max(ws):.2f}), {c:.2f} s, {rss / 2**20:.0f} MiB"
            b, a = r["commits"]
            out.append(f"| {b} -> {a} | {r['what']} | {names[r['measure']]} | {r['mb']:.1f} | {cell(bw, bc, br, bws)} "
                       f"| {cell(aw, ac, ar, aws)} | {bw / aw:.2f}x |")
        return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=250.0, help="the data set (about 1.2 MB of BSON per unit)")
    p.add_argument("--small-scale", type=float, default=90.0, help="the set of the xz runs (the bench's 1x set)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "AB.md")
    p.add_argument("--change", nargs=3, metavar=("COMMIT", "KIND", "WHAT"),
                   help="measure only this commit against its parent (KIND: dump, xz, restore)")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mender-backup-ab-"))
    ctx = Ctx(work, False, a.runs)
    started: list = []
    t0, load0 = time.monotonic(), os.getloadavg()[0]
    try:
        source = servers.start_documentdb(work / "source")
        target = servers.start_documentdb(work / "target")
        small = servers.start_documentdb(work / "small")
        started += [source, target, small]
        ctx.server_pids = {"source": source.pids(), "target": target.pids(), "small": small.pids()}
        seed(ctx, source, a.scale, "big", mender_data.DOCUMENTDB_BENCH)
        seed(ctx, small, a.small_scale, "small", mender_data.DOCUMENTDB_BENCH)
        for s in (source, small):   # settle: PostgreSQL's first read of new rows writes their hints
            ctx.run_unmeasured([PY, "-m", "bench.baselines", "read", s.url, "--threads", "4"])
        ab = AB(ctx, source, target, small)
        if a.change:
            rev, kind, what = a.change
            ab.pair(_resolve(rev + "^"), _resolve(rev), what, kind)
        else:
            for rev, what, kind in CHANGES:
                ab.pair(_resolve(rev + "^"), _resolve(rev), what, kind)
            ab.pair(_resolve(WHOLE[0]), _resolve(WHOLE[1]), "the whole branch", "both")
        took = time.monotonic() - t0
        md = (f"Generated by `python -m bench.ab` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
              f"{took / 60:.1f} min: each change against its parent, on one DocumentDB source (scale {a.scale}) and "
              f"one target, medians of {a.runs} with the two versions alternating; load average at start/end "
              f"{load0:.2f} / {os.getloadavg()[0]:.2f} (2 cores, shared machine). CPU is our process's.\n\n"
              + ab.table() + "\n")
        a.out.write_text(md)
        print(md)
        return 0
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
