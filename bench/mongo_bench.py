"""Dump and restore: mender-backup vs mongodump/mongorestore vs the server's own limits
(bench/baselines.py), on the same server and the same Mender-shaped data (testenv.mender_data).

The main server is DocumentDB (FerretDB v2 on PostgreSQL + DocumentDB); FerretDB v1
(SQLite, ten times slower) gets a smaller second table (FerretDBBench)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from pathlib import Path

from testenv import mender_data, servers

from .context import Ctx
from .measure import PY

SYSTEM_DBS = {"admin", "local", "config"}
XZ_PRESET = 6          # xz's default, what `xz -T0` uses


def mongo_tool(name: str) -> Path:
    """mongodump/mongorestore from the test environment (or BENCH_MONGO_TOOLS, a folder)."""
    folder = os.environ.get("BENCH_MONGO_TOOLS")
    if folder:
        p = Path(folder) / name
        if p.exists():
            return p
        raise servers.ToolMissing(f"{name} not found in {folder} (BENCH_MONGO_TOOLS)")
    return servers.tool(name)


def mongo_tools_status() -> tuple[Path | None, Path | None, str]:
    """(mongodump, mongorestore, '' or why they cannot be measured)."""
    try:
        return mongo_tool("mongodump"), mongo_tool("mongorestore"), ""
    except servers.ToolMissing as exc:
        return None, None, f"not measurable here: {str(exc).splitlines()[0]}"


def tools_line() -> str:
    """For the versions table: mongodump's version, or why there is none."""
    dump, _, missing = mongo_tools_status()
    if not dump:
        return missing
    import subprocess
    out = subprocess.run([str(dump), "--version"], capture_output=True, text=True, timeout=30).stdout
    return (out.strip().splitlines() or ["?"])[0] + f" ({dump})"


def drop_all(client) -> None:
    for db in client.list_database_names():
        if db not in SYSTEM_DBS:
            client.drop_database(db)


def seed(ctx: Ctx, server, scale: float, key: str, caps: mender_data.Capabilities) -> dict:
    """The Mender data set, indexes built after the inserts (as a restore builds them: on
    DocumentDB several times faster than inserting into indexed collections)."""
    client = server.client()
    t0 = time.monotonic()
    counts = mender_data.seed_mongo(client, scale=scale, seed=1, capabilities=caps, indexes_last=True)
    took = time.monotonic() - t0
    info = {"scale": scale, "documents": sum(counts.values()), "collections": len(counts),
            "databases": len({db for db, _ in counts}), "seed_seconds": round(took, 1),
            "left_out": mender_data.left_out(caps)}
    ctx.facts[key] = info
    ctx.log(f"seeded {key}: scale {scale}, {info['documents']} documents in {took:.1f}s")
    return info


def manifest_of(dest: Path, backup_id: str) -> dict:
    return json.loads((dest / "backups" / backup_id / "manifest.json").read_text())


def bson_bytes(manifest: dict) -> int:
    """The source's BSON size: the sum of the per-collection sizes the manifest records."""
    return sum(c["size"] for colls in manifest["databases"].values() for c in colls.values())


def _q(x) -> str:
    return shlex.quote(str(x))


class MongoBench:
    """The DocumentDB runs: `source` holds the 10x data set, `small` the 1x set, `target` is
    emptied before every restore."""

    def __init__(self, ctx: Ctx, source, target, small):
        self.ctx, self.source, self.target, self.small = ctx, source, target, small
        self.dest = ctx.work / "dumps"              # our backups: file:///.../dumps
        self.mongodump, self.mongorestore, self.tools_missing = mongo_tools_status()
        self.backups: list[str] = []                # ids of our backups of the big data set
        self.tool_archive: Path | None = None       # mongodump's (zstd) archive of the big data set

    # ------------------------------------------------------------------ helpers
    def backup_args(self, url: str, dest: Path, compression: str = "zstd") -> list[str]:
        return ["backup", "--mongodb-url", url, "-d", f"file://{dest}", "--compression", compression]

    def restore_args(self, backup_id: str, verify: str = "full", dest: Path | None = None,
                     url: str | None = None) -> list[str]:
        return ["restore", backup_id, "--mongodb-url", url or self.target.url, "-d", f"file://{dest or self.dest}",
                "--verify", verify]

    def empty_target(self) -> None:
        drop_all(self.target.client())

    def archive(self) -> Path:
        return next((self.dest / "backups" / self.backups[-1]).glob("mongodb.archive*"))

    def settle(self) -> None:
        """One unmeasured read of the freshly seeded source: PostgreSQL's first read of new
        rows writes their visibility hints (and is ~2x slower); every measured dump then
        reads the same settled table."""
        t0 = time.monotonic()
        self.ctx.run_unmeasured([PY, "-m", "bench.baselines", "read", self.source.url, "--threads", "4"])
        self.ctx.log(f"settled the source (one unmeasured read, {time.monotonic() - t0:.1f}s)")

    # ------------------------------------------------------------------ rounds
    def dump_round(self, i: int) -> None:
        ctx, env = self.ctx, self.ctx.env()
        ctx.log(f"dump round {i + 1}/{ctx.runs}")

        def raw() -> None:
            ctx.measure("read_raw_par", f"raw read, 4 threads #{i + 1}",
                        [PY, "-m", "bench.baselines", "read", self.source.url, "--threads", "4"], env)

        def ours() -> None:
            r, res = ctx.ours("dump_ours", f"mender-backup backup (zstd) #{i + 1}",
                              self.backup_args(self.source.url, self.dest), env)
            r.extra.update(bson=bson_bytes(manifest_of(self.dest, res["id"])), archive=res["archive_size"],
                           documents=res["documents"])
            self.backups.append(res["id"])
            if len(self.backups) > 1:              # keep one to restore: disk stays small
                shutil.rmtree(self.dest / "backups" / self.backups.pop(0), ignore_errors=True)

        def theirs() -> None:
            s = ctx.s("dump_mongodump_zstd")
            if not self.mongodump:
                s.missing = self.tools_missing
                return
            out = ctx.work / "mongodump.archive.zst"
            r = ctx.measure("dump_mongodump_zstd", f"mongodump --archive | zstd -3 -T0 #{i + 1}",
                            f"{_q(self.mongodump)} --uri={_q(self.source.url)} --archive --quiet"
                            f" | zstd -3 -T0 -q -c > {_q(out)}", env, shell=True, sample_tree=True)
            r.extra["archive"] = out.stat().st_size
            self.tool_archive = out

        steps = [raw, ours, theirs]
        for step in steps[i % 3:] + steps[:i % 3]:      # each goes first once in three rounds
            step()

    def xz_round(self, i: int) -> None:
        """xz on the 1x data set: preset 6 with a thread per core on both sides (`xz -T0`);
        at ~1.5 MB/s per core, the 10x set would take ~6 minutes a run."""
        ctx, env = self.ctx, self.ctx.env()
        dest = ctx.work / "dumps-xz"

        def ours() -> None:
            r, res = ctx.ours("dump_ours_xz", f"mender-backup backup --compression xz, 1x data #{i + 1}",
                              self.backup_args(self.small.url, dest, "xz"), env)
            r.extra.update(bson=bson_bytes(manifest_of(dest, res["id"])), archive=res["archive_size"])
            shutil.rmtree(dest / "backups" / res["id"], ignore_errors=True)

        def theirs() -> None:
            if not self.mongodump:
                ctx.s("dump_mongodump_xz").missing = self.tools_missing
                return
            out = ctx.work / "mongodump.archive.xz"
            r = ctx.measure("dump_mongodump_xz", f"mongodump --archive | xz -T0, 1x data #{i + 1}",
                            f"{_q(self.mongodump)} --uri={_q(self.small.url)} --archive --quiet"
                            f" | xz -{XZ_PRESET} -T0 -c > {_q(out)}", env, shell=True, sample_tree=True)
            r.extra["archive"] = out.stat().st_size
            out.unlink()

        def others() -> None:
            # what the other compressions cost per MB (README: Performance), same data
            for kind in ("gzip", "none"):
                r, res = ctx.ours(f"dump_ours_{kind}", f"mender-backup backup --compression {kind}, 1x data #{i + 1}",
                                  self.backup_args(self.small.url, dest, kind), env)
                r.extra.update(bson=bson_bytes(manifest_of(dest, res["id"])), archive=res["archive_size"])
                shutil.rmtree(dest / "backups" / res["id"], ignore_errors=True)

        for step in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
            step()
        others()

    def restore_round(self, i: int) -> None:
        ctx, env = self.ctx, self.ctx.env()
        backup_id, archive = self.backups[-1], self.archive()
        ctx.log(f"restore round {i + 1}/{ctx.runs} (backup {backup_id})")

        def raw() -> None:
            # the server's limits for what a restore does: inserting the documents, then (right
            # after, the rows as fresh as a restore's read-back finds them) reading them back
            self.empty_target()
            ctx.measure("insert_raw", f"raw insert_many, 4 workers #{i + 1}",
                        [PY, "-m", "bench.baselines", "insert", self.target.url, str(archive), "--workers", "4"], env)
            ctx.measure("read_raw_fresh", f"raw read of the just inserted data, 4 threads #{i + 1}",
                        [PY, "-m", "bench.baselines", "read", self.target.url, "--threads", "4"], env)

        def ours_full() -> None:
            self.empty_target()
            ctx.ours("restore_ours", f"mender-backup restore (--verify full) #{i + 1}",
                     self.restore_args(backup_id), env)

        def ours_counts() -> None:
            self.empty_target()
            ctx.ours("restore_ours_counts", f"mender-backup restore --verify counts #{i + 1}",
                     self.restore_args(backup_id, "counts"), env)

        def theirs() -> None:
            if not self.mongorestore:
                ctx.s("restore_mongorestore").missing = self.tools_missing
                return
            self.empty_target()
            src = self.tool_archive or archive     # mongodump's own archive when there is one
            ctx.measure("restore_mongorestore", f"zstd -dc | mongorestore --archive (with indexes) #{i + 1}",
                        f"zstd -dc {_q(src)} | {_q(self.mongorestore)} --uri={_q(self.target.url)} --archive --quiet",
                        env, shell=True, sample_tree=True)

        steps = [raw, ours_full, ours_counts, theirs]
        for step in steps[i % 4:] + steps[:i % 4]:
            step()
        self.empty_target()

    def memory_1x(self) -> None:
        """Backup and restore of the 1x data set (a tenth of the big one) on its own server:
        peak RSS to compare with the 10x runs above."""
        ctx, env = self.ctx, self.ctx.env()
        dest = ctx.work / "dumps-1x"
        for i in range(ctx.runs):
            r, res = ctx.ours("dump_ours_1x", f"mender-backup backup, 1x data #{i + 1}",
                              self.backup_args(self.small.url, dest), env)
            r.extra.update(bson=bson_bytes(manifest_of(dest, res["id"])), archive=res["archive_size"])
            self.empty_target()
            ctx.ours("restore_ours_1x", f"mender-backup restore, 1x data #{i + 1}",
                     self.restore_args(res["id"], dest=dest), env)
            shutil.rmtree(dest / "backups" / res["id"], ignore_errors=True)
        self.empty_target()

    def s3_once(self, minio, bucket: str) -> None:
        """A backup of the 1x set to MinIO, restored from there, counting what the restore
        reads from S3 (bench/s3reads.py wraps the tool's S3 reads)."""
        ctx = self.ctx
        env = ctx.env(minio.env())
        minio.client().create_bucket(Bucket=bucket)
        _, res = ctx.ours("s3_backup", "mender-backup backup of the 1x data set to S3",
                          ["backup", "--mongodb-url", self.small.url, "-d", f"s3://{bucket}/b"], env)
        self.empty_target()
        r = ctx.measure("restore_s3", "mender-backup restore from S3 (1x data), S3 reads counted",
                        [PY, "-m", "bench.s3reads", "restore", res["id"], "--mongodb-url", self.target.url,
                         "-d", f"s3://{bucket}/b", "--json"], env)
        reads = json.loads([line for line in r.stderr.splitlines() if line.startswith("{\"s3reads\"")][-1])
        archive_key = f"b/backups/{res['id']}/" + res.get("archive_key", "mongodb.archive.zst")
        got = {k: v for k, v in reads["s3reads"].items() if "/mongodb.archive" in k}
        r.extra.update(s3reads=got, archive_size=res["archive_size"], archive_key=archive_key)
        self.empty_target()


class FerretDBBench:
    """FerretDB v1 (SQLite): the second table, on a smaller data set. Its server refuses the
    `ns` option mongorestore sends with every index, so mongorestore runs with
    --noIndexRestore and the same index builds are timed on their own (bench/baselines.py
    indexes)."""

    def __init__(self, ctx: Ctx, source, target, mb: MongoBench):
        self.ctx, self.source, self.target, self.mb = ctx, source, target, mb
        self.dest = ctx.work / "dumps-v1"
        self.backup_id = ""

    def round(self, i: int) -> None:
        ctx, env, mb = self.ctx, self.ctx.env(), self.mb
        ctx.log(f"FerretDB v1 round {i + 1}/{ctx.runs}")
        r, res = ctx.ours("v1_dump_ours", f"FerretDB v1: mender-backup backup #{i + 1}",
                          mb.backup_args(self.source.url, self.dest), env)
        r.extra.update(bson=bson_bytes(manifest_of(self.dest, res["id"])))
        if self.backup_id:
            shutil.rmtree(self.dest / "backups" / self.backup_id, ignore_errors=True)
        self.backup_id = res["id"]
        archive = next((self.dest / "backups" / self.backup_id).glob("mongodb.archive*"))
        ctx.measure("v1_read_raw", f"FerretDB v1: raw read, 4 threads #{i + 1}",
                    [PY, "-m", "bench.baselines", "read", self.source.url, "--threads", "4"], env)
        if not mb.mongodump:
            for k in ("v1_dump_mongodump_zstd", "v1_restore_mongorestore", "v1_mongorestore_indexes"):
                ctx.s(k).missing = mb.tools_missing
        else:
            out = ctx.work / "mongodump-v1.archive.zst"
            ctx.measure("v1_dump_mongodump_zstd", f"FerretDB v1: mongodump --archive | zstd -3 -T0 #{i + 1}",
                        f"{_q(mb.mongodump)} --uri={_q(self.source.url)} --archive --quiet | zstd -3 -T0 -q -c"
                        f" > {_q(out)}", env, shell=True, sample_tree=True)
            drop_all(self.target.client())
            ctx.measure("v1_restore_mongorestore", f"FerretDB v1: mongorestore --noIndexRestore #{i + 1}",
                        f"zstd -dc {_q(out)} | {_q(mb.mongorestore)} --uri={_q(self.target.url)} --archive "
                        f"--quiet --noIndexRestore", env, shell=True, sample_tree=True)
            ctx.measure("v1_mongorestore_indexes", f"FerretDB v1: the same index builds, on their own #{i + 1}",
                        [PY, "-m", "bench.baselines", "indexes", self.target.url, str(archive)], env)
        drop_all(self.target.client())
        ctx.measure("v1_insert_raw", f"FerretDB v1: raw insert_many, 4 workers #{i + 1}",
                    [PY, "-m", "bench.baselines", "insert", self.target.url, str(archive), "--workers", "4"], env)
        drop_all(self.target.client())
        ctx.ours("v1_restore_ours", f"FerretDB v1: mender-backup restore (--verify full) #{i + 1}",
                 mb.restore_args(self.backup_id, dest=self.dest, url=self.target.url), env)
        drop_all(self.target.client())
