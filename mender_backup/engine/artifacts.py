"""Artifact objects: copied incrementally into the backup's shared store, and back.

Mender artifacts are immutable, so a key the shared store already holds with the
same size is not copied again. When source and destination are on the same S3
service, objects are copied server-side; otherwise they are streamed through.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from ..errors import ConflictError
from ..format.manifest import ArtifactEntry
from ..output import Reporter
from ..stores import ObjectInfo, Store

COPY_WORKERS = 16


@dataclass
class CopyPlan:
    to_copy: list[ObjectInfo] = field(default_factory=list)
    present: int = 0

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.to_copy)


def plan(source: dict[str, ObjectInfo], target: dict[str, ObjectInfo]) -> CopyPlan:
    p = CopyPlan()
    for key, obj in sorted(source.items()):
        have = target.get(key)
        if have is not None and have.size == obj.size:
            p.present += 1
        else:
            p.to_copy.append(obj)
    return p


def inventory(store: Store, prefix: str = "") -> dict[str, ObjectInfo]:
    """The objects under `prefix`, by their key after it."""
    return {o.key[len(prefix):]: ObjectInfo(o.key[len(prefix):], o.size, o.etag) for o in store.list(prefix)}


def inventory_under(store: Store, prefix: str) -> dict[str, ObjectInfo]:
    """The objects under `prefix`, by their whole key (a tenant's own store: `<tenant>/<id>`)."""
    return {o.key: ObjectInfo(o.key, o.size, o.etag) for o in store.list(prefix)}


class _Stopped(Exception):
    """A copy thread told to stop: another copy failed, or a signal stopped the run."""


def _copy_one(src: Store, src_key: str, dst: Store, dst_key: str, size: int, stop: threading.Event) -> None:
    if stop.is_set():
        raise _Stopped()
    if dst.copy_within_service(src, src_key, dst_key, size):
        return
    reader = src.open_read(src_key)
    try:
        with dst.open_write(dst_key) as w:
            while chunk := reader.read(1 << 20):      # 16 threads: small buffers
                if stop.is_set():
                    raise _Stopped()                  # open_write aborts the upload
                w.write(chunk)
    finally:
        reader.close()


def copy(src: Store, src_prefix: str, dst: Store, dst_prefix: str, objects: list[ObjectInfo],
         reporter: Reporter, what: str) -> int:
    """Copy objects concurrently; returns bytes copied. The first failure stops the rest,
    as does a signal (Terminated, in this thread): the copies not started are cancelled,
    those under way stop at their next MiB and abort their uploads, and the pool's
    threads are joined before the exception goes on (none is left writing)."""
    total = sum(o.size for o in objects)
    done = 0
    stop = threading.Event()
    with reporter.progress(what, total=total) as prog, ThreadPoolExecutor(COPY_WORKERS) as pool:
        futures = {pool.submit(_copy_one, src, src_prefix + o.key, dst, dst_prefix + o.key, o.size, stop): o
                   for o in objects}
        try:
            for fut in as_completed(futures):
                fut.result()
                done += futures[fut].size
                prog.advance(futures[fut].size)
        except BaseException:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)    # the `with` then joins the threads
            raise
    return done


def entries(objects: dict[str, ObjectInfo]) -> list[ArtifactEntry]:
    return [ArtifactEntry(o.key, o.size, o.etag) for o in sorted(objects.values(), key=lambda o: o.key)]


def restore_plan(wanted: list[ArtifactEntry], target: dict[str, ObjectInfo], drop: bool) -> CopyPlan:
    """What a restore copies into the target bucket. A key present with another
    size is a conflict unless --drop (then it is overwritten); keys the backup
    does not know are left alone."""
    p = CopyPlan()
    conflicts = []
    for a in wanted:
        have = target.get(a.key)
        if have is not None and have.size == a.size:
            p.present += 1
            continue
        if have is not None and not drop:
            conflicts.append(a.key)
        p.to_copy.append(ObjectInfo(a.key, a.size, a.etag))
    if conflicts:
        raise ConflictError(f"{len(conflicts)} artifact(s) in the target bucket differ from the backup "
                            f"(e.g. {conflicts[0]}); rerun with --drop to overwrite them")
    return p


def check_complete(wanted: list[ArtifactEntry], target: dict[str, ObjectInfo]) -> list[str]:
    """Keys missing or of the wrong size after a restore."""
    bad = []
    for a in wanted:
        have = target.get(a.key)
        if have is None or have.size != a.size:
            bad.append(a.key)
    return bad

