"""Artifacts: a full copy by `mender-backup backup` vs `aws s3 cp --recursive`, MinIO to
MinIO and MinIO to a local folder, then a repeat backup after 1% new artifacts."""

from __future__ import annotations

import random
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from testenv import servers

from .context import AWS, Ctx

SOURCE = "mender-artifacts"
OURS = "backups"            # mender-backup's destination bucket
THEIRS = "aws-copy"         # aws s3 cp's destination bucket
TINY_DB = "benchtiny"       # `--db benchtiny`: the mongo part of the artifacts runs is one document

KiB, MiB = 1024, 1024 * 1024
# The artifact size mix: mostly small, some medium, 2% over the 8 MiB multipart threshold of
# both boto3's and the aws cli's managed transfers. tests.mender_data's mix (25% up to 2 MiB,
# 5% of 9-12 MiB) would make 2,000 objects ~1.6 GB: too long for the time budget of a run.
MIX = [(0.80, 1 * KiB, 64 * KiB), (0.18, 64 * KiB, 1 * MiB), (0.02, 8 * MiB + 1, 10 * MiB)]
MIX_TEXT = "80% 1-64 KiB, 18% 64 KiB-1 MiB, 2% 8-10 MiB (multipart for both tools), incompressible"


def objects(count: int, seed: int, tag: str = ""):
    """(key, size): keys are UUIDs like Mender's image ids. Deterministic for a seed."""
    r = random.Random(seed)
    for _ in range(count):
        roll, acc = r.random(), 0.0
        for share, lo, hi in MIX:
            acc += share
            if roll < acc:
                break
        size = r.randrange(lo, hi)
        yield tag + str(uuid.UUID(int=r.getrandbits(128), version=4)), size


def upload(s3, bucket: str, objs: list[tuple[str, int]], seed: int) -> None:
    def put(item):
        key, size = item
        body = random.Random(f"{seed}/{key}").randbytes(size)   # incompressible, like artifacts
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, objs))


def empty(s3, bucket: str, prefix: str = "") -> None:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})


class ArtifactsBench:
    def __init__(self, ctx: Ctx, minio: servers.MinIO, mongo: servers.FerretDB, count: int):
        self.ctx, self.minio, self.mongo, self.count = ctx, minio, mongo, count
        self.s3 = minio.client()
        self.new_count = max(1, count // 100)       # 1% new for the repeat backup

    def setup(self) -> None:
        for b in (SOURCE, OURS, THEIRS):
            self.s3.create_bucket(Bucket=b)
        self.mongo.client()[TINY_DB]["t"].insert_one({"_id": 1, "note": "the artifacts runs dump only this"})
        objs = list(objects(self.count, seed=7))
        t0 = time.monotonic()
        upload(self.s3, SOURCE, objs, seed=7)
        took = time.monotonic() - t0
        sizes = [s for _, s in objs]
        self.ctx.facts["artifacts"] = {
            "objects": len(objs), "bytes": sum(sizes), "multipart_objects": sum(s > 8 * MiB for s in sizes),
            "largest": max(sizes), "median": sorted(sizes)[len(sizes) // 2],
            "new_for_repeat": self.new_count, "seed_seconds": round(took, 1),
            "mix": MIX_TEXT,
        }
        self.ctx.log(f"seeded {len(objs)} artifacts, {sum(sizes) / 1e6:.0f} MB, in {took:.1f}s")

    def _env(self):
        return self.ctx.env(self.minio.env())

    def _ours(self, series: str, label: str, dest: str, artifacts: bool = True):
        args = ["backup", "--mongodb-url", self.mongo.url, "--db", TINY_DB, "-d", dest]
        if artifacts:
            args += ["--artifacts-bucket", SOURCE]
        return self.ctx.ours(series, label, args, self._env())

    def _aws(self, series: str, label: str, verb: str, src: str, dst: str):
        cmd = [str(AWS), "s3", verb, *(["--recursive"] if verb == "cp" else []), "--only-show-errors",
               "--no-progress", "--endpoint-url", self.minio.endpoint, src, dst]
        return self.ctx.measure(series, label, cmd, self._env())

    def round(self, i: int) -> None:
        ctx, n = self.ctx, i + 1
        ctx.log(f"artifacts round {n}/{ctx.runs}")
        local_ours, local_aws = ctx.work / f"local-ours-{n}", ctx.work / f"local-aws-{n}"
        s3_ours, s3_aws = f"s3://{OURS}/r{n}", f"s3://{THEIRS}/r{n}/"

        full = [
            (lambda: self._ours("art_s3_ours", f"mender-backup, artifacts to S3 #{n}", s3_ours),
             lambda: self._aws("art_s3_aws", f"aws s3 cp --recursive s3->s3 #{n}", "cp", f"s3://{SOURCE}", s3_aws)),
            (lambda: self._ours("art_local_ours", f"mender-backup, artifacts to file:// #{n}", f"file://{local_ours}"),
             lambda: self._aws("art_local_aws", f"aws s3 cp --recursive s3->dir #{n}", "cp", f"s3://{SOURCE}",
                               str(local_aws))),
        ]
        for ours, theirs in full:
            for step in ((ours, theirs) if i % 2 == 0 else (theirs, ours)):
                step()
        # what any backup costs without artifacts (start-up, the one-document dump, manifest)
        self._ours("art_fixed_ours", f"mender-backup, no artifacts (fixed cost) #{n}", f"s3://{OURS}/fixed{n}",
                   artifacts=False)

        new = list(objects(self.new_count, seed=1000 + i, tag=f"new{n}-"))
        upload(self.s3, SOURCE, new, seed=1000 + i)
        self._ours("art_s3_ours_repeat", f"mender-backup repeat, +1% new, to S3 #{n}", s3_ours)
        self._ours("art_local_ours_repeat", f"mender-backup repeat, +1% new, to file:// #{n}", f"file://{local_ours}")
        self._aws("art_s3_aws_sync", f"aws s3 sync s3->s3 after +1% #{n}", "sync", f"s3://{SOURCE}", s3_aws)
        self._aws("art_local_aws_sync", f"aws s3 sync s3->dir after +1% #{n}", "sync", f"s3://{SOURCE}",
                  str(local_aws))

        # back to the same source for the next round; the copies go
        self.s3.delete_objects(Bucket=SOURCE, Delete={"Objects": [{"Key": k} for k, _ in new], "Quiet": True})
        empty(self.s3, OURS)
        empty(self.s3, THEIRS)
        shutil.rmtree(local_ours, ignore_errors=True)
        shutil.rmtree(local_aws, ignore_errors=True)
