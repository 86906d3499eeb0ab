"""Dump and restore: mender-backup vs mongodump/mongorestore vs the raw-server baselines,
on the same FerretDB and the same realistic Mender data (tests.mender_data)."""

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
MONGO_TOOLS_403 = "not measurable here: mongo-tools unavailable (403 from the module proxy)"


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
        msg = str(exc)
        return None, None, MONGO_TOOLS_403 if "403" in msg else f"not measurable here: {msg.splitlines()[0]}"


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


def seed(ctx: Ctx, server: servers.FerretDB, scale: float, key: str) -> dict:
    client = server.client()
    t0 = time.monotonic()
    counts = mender_data.seed_mongo(client, scale=scale, seed=1)
    took = time.monotonic() - t0
    info = {"scale": scale, "documents": sum(counts.values()), "collections": len(counts),
            "databases": len({db for db, _ in counts}), "seed_seconds": round(took, 1)}
    ctx.facts[key] = info
    ctx.log(f"seeded {key}: scale {scale}, {info['documents']} documents in {took:.1f}s")
    return info


def manifest_of(dest: Path, backup_id: str) -> dict:
    return json.loads((dest / "backups" / backup_id / "manifest.json").read_text())


def bson_bytes(manifest: dict) -> int:
    """The source's BSON size: the sum of the per-collection sizes the manifest records
    (bytes of raw BSON read from the server)."""
    return sum(c["size"] for colls in manifest["databases"].values() for c in colls.values())


class MongoBench:
    def __init__(self, ctx: Ctx, source: servers.FerretDB, target: servers.FerretDB, small: servers.FerretDB):
        self.ctx, self.source, self.target, self.small = ctx, source, target, small
        self.dest = ctx.work / "dumps"              # our backups: file:///.../dumps
        self.mongodump, self.mongorestore, self.tools_missing = mongo_tools_status()
        self.backups: list[str] = []                # ids of our backups of the big data set
        self.tool_archive: Path | None = None

    # ------------------------------------------------------------------ helpers
    def _backup_args(self, url: str, compression: str = "zstd") -> list[str]:
        return ["backup", "--mongodb-url", url, "-d", f"file://{self.dest}", "--compression", compression]

    def restore_args(self, backup_id: str) -> list[str]:
        return ["restore", backup_id, "--mongodb-url", self.target.url, "-d", f"file://{self.dest}"]

    def empty_target(self) -> None:
        drop_all(self.target.client())

    # ------------------------------------------------------------------ rounds
    def dump_round(self, i: int) -> None:
        ctx, env = self.ctx, self.ctx.env()
        ctx.log(f"dump round {i + 1}/{ctx.runs}")
        ctx.measure("read_raw_par", f"raw read, 4 threads #{i + 1}",
                    [PY, "-m", "bench.baselines", "read", self.source.url, "--threads", "4"], env)
        if i == 0:      # once: the reference for the restore's one-collection-at-a-time read-back
            ctx.measure("read_raw_seq", "raw read, 1 thread",
                        [PY, "-m", "bench.baselines", "read", self.source.url, "--threads", "1"], env)

        def ours() -> None:
            r, res = ctx.ours("dump_ours", f"mender-backup backup (zstd) #{i + 1}",
                              self._backup_args(self.source.url), env)
            m = manifest_of(self.dest, res["id"])
            r.extra.update(bson=bson_bytes(m), archive=res["archive_size"], documents=res["documents"])
            self.backups.append(res["id"])
            if len(self.backups) > 1:              # keep one to restore: disk stays small
                shutil.rmtree(self.dest / "backups" / self.backups.pop(0), ignore_errors=True)

        def theirs() -> None:
            s = ctx.s("dump_mongodump_zstd")
            if not self.mongodump:
                s.missing = self.tools_missing
                return
            out = ctx.work / "mongodump.archive.zst"
            cmd = (f"{shlex.quote(str(self.mongodump))} --uri={shlex.quote(self.source.url)} --archive --quiet"
                   f" | zstd -3 -T0 -q -c > {shlex.quote(str(out))}")
            r = ctx.measure("dump_mongodump_zstd", f"mongodump --archive | zstd #{i + 1}", cmd, env,
                            shell=True, sample_tree=True)
            r.extra["archive"] = out.stat().st_size
            self.tool_archive = out

        for step in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
            step()

        if i == 0 and self.mongodump:
            # the documented way with xz: once, both sides (xz is slow and single-threaded)
            ctx.ours("dump_ours_xz", "mender-backup backup --compression xz", self._backup_args(self.source.url, "xz"), env)
            out = ctx.work / "mongodump.archive.xz"
            ctx.measure("dump_mongodump_xz", "mongodump --archive | xz",
                        f"{shlex.quote(str(self.mongodump))} --uri={shlex.quote(self.source.url)} --archive --quiet"
                        f" | xz -c > {shlex.quote(str(out))}", env, shell=True, sample_tree=True)
        elif i == 0:
            ctx.s("dump_ours_xz").missing = ctx.s("dump_mongodump_xz").missing = self.tools_missing

    def restore_round(self, i: int) -> None:
        ctx, env = self.ctx, self.ctx.env()
        backup_id = self.backups[-1]
        archive = next((self.dest / "backups" / backup_id).glob("mongodb.archive*"))
        ctx.log(f"restore round {i + 1}/{ctx.runs} (backup {backup_id})")

        self.empty_target()
        ctx.measure("insert_raw", f"raw insert_many, 4 workers #{i + 1}",
                    [PY, "-m", "bench.baselines", "insert", self.target.url, str(archive), "--workers", "4"], env)

        def ours() -> None:
            self.empty_target()
            ctx.ours("restore_ours", f"mender-backup restore #{i + 1}", self.restore_args(backup_id), env)

        def theirs() -> None:
            s = ctx.s("restore_mongorestore")
            if not self.mongorestore:
                s.missing = self.tools_missing
                return
            self.empty_target()
            src = self.tool_archive or archive     # mongodump's own archive when there is one
            cmd = (f"zstd -dc {shlex.quote(str(src))} | {shlex.quote(str(self.mongorestore))} "
                   f"--uri={shlex.quote(self.target.url)} --archive --quiet")
            ctx.measure("restore_mongorestore", f"zstd -dc | mongorestore --archive #{i + 1}", cmd, env,
                        shell=True, sample_tree=True)

        for step in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
            step()

    def memory_1x(self) -> None:
        """Backup and restore of the 1x data set (a tenth of the big one) on its own server:
        peak RSS to compare with the 10x runs above."""
        ctx, env = self.ctx, self.ctx.env()
        dest = ctx.work / "dumps-1x"
        for i in range(ctx.runs):
            r, res = ctx.ours("dump_ours_1x", f"mender-backup backup, 1x data #{i + 1}",
                              ["backup", "--mongodb-url", self.small.url, "-d", f"file://{dest}"], env)
            r.extra["bson"] = bson_bytes(manifest_of(dest, res["id"]))
            self.empty_target()
            ctx.ours("restore_ours_1x", f"mender-backup restore, 1x data #{i + 1}",
                     ["restore", res["id"], "--mongodb-url", self.target.url, "-d", f"file://{dest}"], env)
            shutil.rmtree(dest / "backups" / res["id"], ignore_errors=True)
        self.empty_target()
