"""`make bench` / `python -m bench.run [--quick]`: mender-backup side by side with mongodump,
mongorestore and the aws cli, on the real servers of the test environment.

One run starts MinIO, three DocumentDBs (FerretDB v2 on PostgreSQL + DocumentDB: the source
with the "10x" data set of at least 1 GiB of BSON, an empty restore target, a source with
the "1x" set) and two FerretDB v1s (a smaller second table), seeds them, and measures:

 1. the servers' own limits: a bare multi-threaded raw read, a bare raw insert_many with the
    restore's workers, and a raw read of the data just inserted (bench/baselines.py);
 2. dump: `mender-backup backup` vs `mongodump --archive | zstd -3 -T0` (10x), and with xz
    vs `| xz -T0` (1x: xz does ~1.5 MB/s per core);
 3. restore: `mender-backup restore` (--verify full, and counts) vs `mongorestore --archive`
    with its index builds;
 4. memory: peak RSS of backup and restore at 1x and 10x; a restore from S3, counting its reads;
 5. FerretDB v1: dump and restore vs mongodump and mongorestore --noIndexRestore plus the same
    index builds timed on their own (it refuses the `ns` mongorestore puts in index specs);
 6. artifacts: a full copy vs `aws s3 cp --recursive` (MinIO -> MinIO, MinIO -> folder),
    then a repeat backup after 1% new artifacts;
 7. a profile (pyinstrument) of the restore, and of the artifact copy when its targets are missed.

Results: a summary table on stdout and bench/RESULTS.md (`--results` elsewhere; `--quick`
writes none unless asked). Nothing asserts on a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testenv import mender_data, servers

from . import env_info
from .artifacts_bench import OURS, SOURCE, TINY_DB, ArtifactsBench
from .context import EXE, Ctx
from .measure import BIN, PY
from .mongo_bench import FerretDBBench, MongoBench, seed, tools_line
from .profiling import trim
from .report import (MINIO, SMALL, SRC, TGT, V1_SRC, V1_TGT, load_state, results_md, save_state, summary_table,
                     targets)

HERE = Path(__file__).resolve().parent
# scale 900: ~1.08 GB of BSON (1.2 MB per unit with DocumentDB's data shape); the 1x set a tenth
FULL = {"scale": 900.0, "v1_scale": 15.0, "artifacts": 2000, "runs": 3, "profile_objects": 300}
QUICK = {"scale": 10.0, "v1_scale": 2.0, "artifacts": 60, "runs": 1, "profile_objects": 30}


def _pyinstrument(ctx: Ctx, name: str, label: str, args: list[str], env: dict[str, str],
                  phases: list[str]) -> tuple[dict, str]:
    """`pyinstrument mender-backup ARGS` (main thread), then its text tree and phase times."""
    session = ctx.work / f"{name}.pyisession"
    ctx.measure("prof_" + name, label, [str(BIN / "pyinstrument"), "-r", "pyisession", "-o", str(session),
                                        str(EXE), *args, "--json"], env)
    text = ctx.work / f"{name}.txt"
    r = subprocess.run([PY, "-m", "bench.profiling", "summarize", str(session), "--out", str(text),
                        *[f"--phase={p}" for p in phases]], capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1]), text.read_text(errors="replace")


def _phases_text(d: dict, names: dict[str, str]) -> str:
    return "; ".join(f"{label}: {d['phases'].get(key, 0):.2f} s" for key, label in names.items())


def _profile_artifacts(ctx: Ctx, art: ArtifactsBench, n_objects: int) -> list[dict]:
    """The artifact copy: the one part of a run where our own code, not FerretDB, sets the pace."""
    ctx.log("profiling the artifact copy")
    env = ctx.env(art.minio.env())
    out: list[dict] = []

    # 1. the whole command: pyinstrument samples the main thread, which submits and waits
    names = {"copy": "artifacts.copy (submitting to the pool and waiting for it)",
             "ThreadPoolExecutor.submit": "of which submit() (starting the 16 threads)",
             "as_completed": "of which waiting for the copies", "inventory": "listing source and destination",
             "_dump": "the one-document dump"}
    d, text = _pyinstrument(ctx, "backup_artifacts", "pyinstrument mender-backup backup (artifacts to S3)",
                            ["backup", "--mongodb-url", art.mongo.url, "--db", TINY_DB, "--artifacts-bucket",
                             SOURCE, "-d", f"s3://{OURS}/profile"], env, list(names))
    out.append({"title": "`pyinstrument mender-backup backup --artifacts-bucket ...` (MinIO -> MinIO, main thread)",
                "summary": f"{d['seconds']:.2f} s ({d['cpu_seconds']:.2f} s CPU, all threads). "
                           f"{_phases_text(d, names)}. The copies themselves run in `artifacts.COPY_WORKERS` "
                           "threads, which pyinstrument does not sample: the next two profiles look into them.",
                "text": trim(text, min_share=0.005, max_lines=400, max_depth=60),
                "excerpt_from": "run  backup/backup_job.py"})

    # 2. what one boto3 client per worker thread costs
    r = ctx.measure("prof_clients", "cost of S3Store's per-thread boto3 clients (16 threads)",
                    [PY, "-m", "bench.profiling", "clients", "--threads", "16"], env)
    c = json.loads(r.stdout.strip().splitlines()[-1])
    pt, one = c["per_thread"], c["one_shared"]
    if pt["clients"] > 1:
        how = (f"The copy pool's 16 threads get {pt['clients']} boto3 clients from `S3Store.client` (one per "
               f"thread, each from a new Session that loads and parses the S3 service model again)")
    else:
        how = "The copy pool's 16 threads share one boto3 client from `S3Store.client`"
    out.append({"title": "boto3 clients of `S3Store.client` for 16 threads, vs one client",
                "summary": f"{how}: {pt['seconds']:.2f} s wall, {pt['cpu_seconds']:.2f} s CPU, "
                           f"+{pt['rss_growth_mib']:.0f} MiB RSS. One client made directly: "
                           f"{one['seconds']:.3f} s, {one['cpu_seconds']:.3f} s CPU, +{one['rss_growth_mib']:.0f} MiB."})

    # 3. one worker's view: the tool's own _copy_one, sequentially, under pyinstrument
    for kind, dest in (("MinIO -> MinIO (server-side)", f"s3://{OURS}/profile-harness"),
                       ("MinIO -> folder", f"file://{ctx.work / 'profile-harness'}")):
        ptxt = ctx.work / f"profile-copy-{'s3' if dest.startswith('s3') else 'file'}.txt"
        r = ctx.measure("prof_copy", f"pyinstrument artifacts._copy_one x{n_objects}, {kind}",
                        [PY, "-m", "bench.profiling", "copy", "--source-bucket", SOURCE, "--dest", dest,
                         "--objects", str(n_objects), "--out", str(ptxt)], env)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        hs = "; ".join(f"{k.strip()}: {v:.2f} s" for k, v in d["hotspots_seconds"].items() if v)
        reqs = ", ".join(f"{k} {v:g}" for k, v in d["requests_per_object"].items())
        out.append({"title": f"`artifacts._copy_one`, {d['objects']} objects one after another, {kind}",
                    "summary": f"{d['seconds']:.2f} s, {d['ms_per_object']:.1f} ms per object. S3 requests per "
                               f"object: {reqs}. Threads started per object: {d['threads_started_per_object']:g}. "
                               + (f"Time in: {hs}." if hs else ""),
                    "text": trim(ptxt.with_suffix(".all.txt").read_text(errors="replace"), min_share=0.005,
                                 max_lines=400, max_depth=60),
                    "excerpt_from": "copy_profile  bench/profiling.py"})
    return out


def _profile_restore(ctx: Ctx, mb: MongoBench) -> list[dict]:
    """Where a restore's time goes: its phases run on the main thread, which pyinstrument
    samples (the inserts, checks and index builds run in pools: their time shows as the main
    thread's waits)."""
    ctx.log("profiling the restore")
    mb.empty_target()
    names = {"local_copy": "proving the archive (sha256)", "plan_target": "plan",
             "create_collections": "creating the collections",
             "Loader.run": "inserting, with each collection checked (and its indexes built) once its inserts "
                           "are acknowledged",
             "Loader.build_indexes": "waiting for the last index builds"}
    d, text = _pyinstrument(ctx, "restore", "pyinstrument mender-backup restore", mb.restore_args(mb.backups[-1]),
                            ctx.env(), list(names))
    mb.empty_target()
    return [{"title": "`pyinstrument mender-backup restore` (--verify full, main thread)",
             "summary": f"{d['seconds']:.2f} s ({d['cpu_seconds']:.2f} s CPU). {_phases_text(d, names)}.",
             "text": trim(text, min_share=0.005, max_lines=400, max_depth=60),
             "excerpt_from": "_write  ../../mender_backup/engine/restore/__init__.py"}]


def _code() -> dict:
    """Which mender-backup was measured (read-only git commands)."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else "?"
    return {"head": git("rev-parse", "--short", "HEAD"),
            "backup_dirty": [line[3:] for line in git("status", "--porcelain", "--", "mender_backup").splitlines()]}


def _findings(ctx: Ctx) -> str:
    """The hand-written reading of the profiles (bench/FINDINGS.md), when there are profiles."""
    path, ab = HERE / "FINDINGS.md", HERE / "AB.md"
    if not (ctx.facts.get("profiles") and path.exists()):
        return ""
    # each change against its parent: `python -m bench.ab` writes AB.md
    table = ab.read_text().strip() if ab.exists() else "(no A/B table: run `python -m bench.ab`)"
    return path.read_text().replace("AB_TABLE", table)


def _before(results: Path | None) -> Ctx | None:
    """An earlier run kept as results-before.json (code before a change), to compare with."""
    path = results.with_name("results-before.json") if results else None
    return load_state(path)[0] if path and path.exists() else None


def _render(results: Path) -> int:
    ctx, total = load_state(results.with_name("results.json"))
    rows = targets(ctx)
    results.write_text(results_md(ctx, rows, total, _findings(ctx), _before(results)))
    print(summary_table(rows, markdown=False))
    print(f"wrote {results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny data, one run (< 2 minutes): a smoke test")
    p.add_argument("--runs", type=int, help="runs of each measurement (default 3, quick 1)")
    p.add_argument("--scale", type=float, help="scale of the 10x data set (testenv.mender_data; about "
                   "1.2 MB of BSON per unit); the 1x set is a tenth")
    p.add_argument("--artifacts", type=int, help="number of artifact objects (default 2000)")
    p.add_argument("--results", type=Path, help="write the results here (default bench/RESULTS.md; "
                   "--quick writes none unless given)")
    p.add_argument("--profile-artifacts", action="store_true",
                   help="profile the artifact copy even when its targets are met")
    p.add_argument("--keep", action="store_true", help="keep the work folder (servers' data, logs, profiles)")
    p.add_argument("--render", action="store_true", help="measure nothing: write RESULTS.md again from the "
                   "measurements saved next to it (results.json), e.g. after editing bench/FINDINGS.md")
    a = p.parse_args(argv)
    if a.render:
        return _render(a.results or HERE / "RESULTS.md")
    cfg = dict(QUICK if a.quick else FULL)
    for k in ("runs", "scale", "artifacts"):
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    results = a.results if a.results else (None if a.quick else HERE / "RESULTS.md")

    work = Path(tempfile.mkdtemp(prefix="mender-backup-bench-"))
    ctx = Ctx(work, a.quick, int(cfg["runs"]))
    t_start = time.monotonic()
    load_start = os.getloadavg()[0]
    ctx.log(f"work folder {work}; {'quick' if a.quick else 'full'} run: {cfg}")
    started: list = []
    try:
        code = _code()
        ctx.facts["code"] = {"head_start": code["head"], "backup_dirty": code["backup_dirty"]}
        mongo_tools = tools_line()
        ctx.facts["machine"] = env_info.machine()
        ctx.facts["versions"] = env_info.versions(mongo_tools)

        minio = servers.start_minio(work / "minio")
        started.append(minio)
        source = servers.start_documentdb(work / "docdb-source")
        started.append(source)
        target = servers.start_documentdb(work / "docdb-target")
        started.append(target)
        small = servers.start_documentdb(work / "docdb-1x")
        started.append(small)
        v1_source = servers.start_ferretdb(work / "ferretdb-source")
        started.append(v1_source)
        v1_target = servers.start_ferretdb(work / "ferretdb-target")
        started.append(v1_target)
        ctx.server_pids = {SRC: source.pids(), TGT: target.pids(), SMALL: small.pids(),
                           V1_SRC: v1_source.server.proc.pid, V1_TGT: v1_target.server.proc.pid,
                           MINIO: minio.server.proc.pid}

        seed(ctx, source, cfg["scale"], "big", mender_data.DOCUMENTDB_BENCH)
        seed(ctx, small, round(cfg["scale"] / 10, 3), "small", mender_data.DOCUMENTDB_BENCH)
        seed(ctx, v1_source, cfg["v1_scale"], "v1", mender_data.FERRETDB_V1)

        mb = MongoBench(ctx, source, target, small)
        mb.settle()
        for i in range(ctx.runs):
            mb.dump_round(i)
        for i in range(ctx.runs):
            mb.restore_round(i)
        for i in range(ctx.runs):
            mb.xz_round(i)
        mb.memory_1x()
        mb.s3_once(minio, "s3-restore")
        v1 = FerretDBBench(ctx, v1_source, v1_target, mb)
        for i in range(ctx.runs):
            v1.round(i)

        # the artifacts runs dump one document from an otherwise empty server (the restore target,
        # empty again by now): their fixed cost is then the tool's own, not the server's
        art = ArtifactsBench(ctx, minio, target, int(cfg["artifacts"]))
        art.setup()
        for i in range(ctx.runs):
            art.round(i)

        rows = targets(ctx)
        profiles = []
        if a.profile_artifacts or any(("Artifacts" in r.name or "Repeat" in r.name) and r.met is False
                                      for r in rows):
            profiles += _profile_artifacts(ctx, art, int(cfg["profile_objects"]))
        profiles += _profile_restore(ctx, mb)
        ctx.facts["profiles"] = profiles

        rows = targets(ctx)
        total = time.monotonic() - t_start
        ctx.facts["load"] = [load_start, os.getloadavg()[0]]
        end = _code()
        ctx.facts["code"].update(head_end=end["head"], backup_dirty=sorted(set(ctx.facts["code"]["backup_dirty"])
                                                                           | set(end["backup_dirty"])))
        md = results_md(ctx, rows, total, _findings(ctx), _before(results))
        if results:
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(md)
            save_state(ctx, total, results.with_name("results.json"))
            ctx.log(f"wrote {results} and {results.with_name('results.json')}")
        if a.keep:
            (work / "RESULTS.md").write_text(md)
        print()
        print(summary_table(rows, markdown=False))
        print(f"\ntotal wall time: {total / 60:.1f} min ({total:.0f} s)")
        return 0
    finally:
        for s in reversed(started):
            s.stop()
        if a.keep:
            ctx.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
