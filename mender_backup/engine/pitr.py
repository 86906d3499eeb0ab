"""Point-in-time recovery: the oplog slices at a destination, the time ranges they
make restorable, and the plan of a `restore --to-time`.

A consistent backup restores the source's state at its consistency point E; the
slices after it carry the state forward to any time T they cover. A restore to T
takes the newest consistent backup with E <= T and the chain of contiguous slices
from the one that holds E to the first one that reaches T. A broken chain (a slice
whose `from` is not the previous slice's `to`: the oplog rolled over between two
runs of `mender-backup oplog`) is refused as an integrity error before anything
is written; so is a slice whose bytes do not match its manifest.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime

from bson import Timestamp

from ..errors import IntegrityError, MenderBackupError, NotFoundError, UsageError
from ..format import encryption
from ..format.digest import HashingReader
from ..format.encryption import Keyring
from ..format.layout import OPLOG, slice_key
from ..format.manifest import Manifest
from ..format.slices import OpTime, SliceManifest, parse_slice_name, slice_context
from ..output import Reporter
from ..stores import Store
from .catalog import one_line


class _Named:
    """A slice's two objects, from its name `<from>-<to>`."""
    name: str

    @property
    def data_key(self) -> str:
        return slice_key(f"{self.name}.bson.zst")

    @property
    def manifest_key(self) -> str:
        return slice_key(f"{self.name}.json")


@dataclass
class Slice(_Named):
    name: str                 # <from>-<to>, without extension
    manifest: SliceManifest

    @property
    def first(self) -> OpTime:
        return self.manifest.first

    @property
    def last(self) -> OpTime:
        return self.manifest.last


@dataclass
class DamagedSlice(_Named):
    """A slice manifest that could not be read or is not valid: its range comes from its
    name. Never used by a restore; removed by prune only as a valid slice would be (when no
    kept backup can need its range), and never while it may just have been unreadable."""
    name: str
    first: OpTime
    last: OpTime
    problem: str
    read_error: bool          # reading failed (transient, access): it may well be valid


@dataclass
class Slices:
    """The oplog slices at a destination: the valid ones oldest first, and the others."""
    valid: list[Slice]
    damaged: list[DamagedSlice]

    @property
    def read_errors(self) -> list[DamagedSlice]:
        return [d for d in self.damaged if d.read_error]

    def require_readable(self, what: str) -> None:
        """`what` (a restore to a time, the next slice) cannot be decided with an unread slice."""
        if self.read_errors:
            d = self.read_errors[0]
            raise MenderBackupError(f"{what}: oplog slice {d.name}'s manifest could not be read ({d.problem})")


def scan(store: Store) -> Slices:
    """Every committed slice (its manifest written). One bad manifest does not hide the
    others: it is listed apart (DamagedSlice) with its reason."""
    valid, damaged = [], []
    for obj in store.list(OPLOG):
        name = obj.key[len(OPLOG):]
        parsed = parse_slice_name(name)
        if parsed is None or parsed[2] != "json":
            continue
        base = name[:-len(".json")]
        try:
            raw = store.get_bytes(obj.key)
        except NotFoundError:         # pruned while we listed
            continue
        except Exception as exc:
            damaged.append(_damaged(base, parsed, exc, True))
            continue
        try:
            valid.append(Slice(base, SliceManifest.from_json(raw, f"oplog slice {base}")))
        except Exception as exc:
            damaged.append(_damaged(base, parsed, exc, False))
    return Slices(sorted(valid, key=lambda s: (s.first, s.last)), sorted(damaged, key=lambda d: (d.first, d.last)))


def _damaged(base: str, parsed, exc: Exception, read_error: bool) -> DamagedSlice:
    (t1, i1), (t2, i2), _ = parsed
    return DamagedSlice(base, OpTime(t1, i1), OpTime(t2, i2), one_line(exc),
                        read_error)


def follower(slices: list[Slice], prev: Slice) -> Slice | None:
    """The slice that continues `prev` (starts at its last entry)."""
    return next((s for s in slices if s.first == prev.last and s.last > prev.last), None)


def holding(slices: list[Slice], pos: OpTime) -> Slice | None:
    """The newest-reaching slice that holds position `pos`."""
    inside = [s for s in slices if s.first <= pos <= s.last]
    return max(inside, key=lambda s: s.last) if inside else None


def reach(slices: list[Slice], start: OpTime) -> OpTime:
    """How far contiguous slices carry a restore that starts at `start`."""
    s = holding(slices, start)
    end = start
    while s is not None:
        end = s.last
        s = follower(slices, s)
    return end


def annotate(rows: list[dict], manifests: dict[str, Manifest], slices: list[Slice]) -> None:
    """`list`: for each backup, whether it is point-in-time consistent, at what time,
    and up to when the slices after it make it restorable."""
    for r in rows:
        m = manifests.get(r["id"])
        pit = m.point_in_time if m else None
        r["consistent"] = None if pit is None else pit.consistent
        r["consistent_at"] = pit.end.time if pit and pit.end else None
        r["restorable_until"] = reach(slices, pit.end).time if pit and pit.end else None


@dataclass
class Target:
    """Where a restore stops: a wall-clock time, or an oplog timestamp."""
    time: datetime | None = None
    ts: Timestamp | None = None

    def reached_by(self, pos: OpTime) -> bool:
        return pos.ts >= self.ts if self.ts is not None else pos.when >= self.time

    def after(self, pos: OpTime) -> bool:
        """The target is at or after `pos`: a backup consistent at `pos` can reach it."""
        return pos.ts <= self.ts if self.ts is not None else pos.when <= self.time

    def __str__(self) -> str:
        return f"{self.ts.time}:{self.ts.inc}" if self.ts is not None else self.time.isoformat()


@dataclass
class Plan:
    manifest: Manifest
    slices: list[Slice]

    def describe(self) -> dict:
        return {"base": self.manifest.id, "consistent_at": self.manifest.point_in_time.end.as_json(),
                "slices": [s.name for s in self.slices]}


def choose(backups: list[Manifest], slices: list[Slice], target: Target, backup_id: str | None) -> Plan:
    """The base backup and the slices a restore to `target` needs; refusals are one line."""
    consistent = [m for m in backups if m.point_in_time and m.point_in_time.end]
    if backup_id and backup_id != "latest":
        consistent = [m for m in consistent if m.id == backup_id]
        if not consistent:
            raise UsageError(f"backup {backup_id} is not point-in-time consistent: it cannot be the base of a "
                             f"restore to a time")
    usable = [m for m in consistent if target.after(m.point_in_time.end)]
    if not usable:
        raise NotFoundError(f"no point-in-time consistent backup before {target}")
    base = max(usable, key=lambda m: m.point_in_time.end)
    end = base.point_in_time.end
    if target.reached_by(end):
        return Plan(base, [])
    chain: list[Slice] = []
    s = holding(slices, end)
    while s is not None:
        chain.append(s)
        if target.reached_by(s.last):
            return Plan(base, chain)
        s = follower(slices, s)
    covered = chain[-1].last if chain else end
    later = [x for x in slices if x.first > covered]
    if later:
        raise IntegrityError(f"the oplog slices have a gap between {covered} and {later[0].first} (the oplog "
                             f"rolled over between two runs of `mender-backup oplog`): cannot restore backup "
                             f"{base.id} to {target}; it is restorable up to {covered.time}")
    raise NotFoundError(f"the oplog is shipped only up to {covered.time}: cannot restore to {target} yet "
                        f"(run `mender-backup oplog`, then restore)")


@contextlib.contextmanager
def fetched(store: Store, plan: Plan, reporter: Reporter, keyring: Keyring | None = None,
            tmp_limit: int | None = None):
    """The plan's slices, checked against their manifests (size, sha256) before the restore
    writes anything; an encrypted slice is decrypted whole then too (every segment
    authenticated); -> [(slice, opener of its compressed bytes)]. Each is read once into a
    temporary file when TMPDIR has room for it, else read twice (checked, then replayed):
    a restore never fails for want of /tmp."""
    from .spool import free_space
    with contextlib.ExitStack() as stack:
        out = []
        for s in plan.slices:
            # a local store is read again at no cost; a remote one is copied once when it fits
            room = not store.local and free_space(tempfile.gettempdir(), tmp_limit) > 2 * s.manifest.size + (64 << 20)
            if not room and not store.local:
                reporter.warn(f"oplog slice {s.name} ({s.manifest.size} bytes) does not fit in TMPDIR: reading it "
                              f"from the store twice instead")
            f = stack.enter_context(tempfile.TemporaryFile(prefix="mender-backup-slice-")) if room else None
            _check_slice(store, s, f)
            if f is None:
                out.append((s, _rereader(stack, store, s, keyring)))
                continue
            f.seek(0)
            if s.manifest.encryption:
                f = _decrypted(stack, f, s, keyring)
            out.append((s, _rewinder(f)))
        if out:
            reporter.info(f"{len(out)} oplog slice(s) checked: {out[0][0].first} to {out[-1][0].last}")
        yield out


def _check_slice(store: Store, s: Slice, copy_to) -> None:
    """Read the slice's bytes once, hashing them (into `copy_to` when given)."""
    try:
        with contextlib.closing(store.open_read(s.data_key)) as src:
            h = HashingReader(src)
            if copy_to is not None:
                shutil.copyfileobj(h, copy_to, 1 << 20)
            else:
                h.drain()
    except NotFoundError:
        raise IntegrityError(f"oplog slice {s.name} is missing its data ({s.data_key})") from None
    if h.size != s.manifest.size or h.hexdigest() != s.manifest.sha256:
        raise IntegrityError(f"oplog slice {s.name} is corrupt: sha256 {h.hexdigest()[:16]}… size "
                             f"{h.size}, its manifest says {s.manifest.sha256[:16]}… size {s.manifest.size}")


def _rewinder(f):
    def opener():
        f.seek(0)
        return f
    return opener


def _rereader(stack: contextlib.ExitStack, store: Store, s: Slice, keyring: Keyring | None):
    """Opens the slice from the store again; a second read that differs from the checked one
    fails on the decoder's own checks or, encrypted, on authentication."""
    def opener():
        src = stack.enter_context(contextlib.closing(store.open_read(s.data_key)))
        if s.manifest.encryption:
            fp = s.manifest.encryption["key_fingerprint"]
            (keyring or Keyring([])).require(fp, f"oplog slice {s.name}")
            return encryption.decryptor(src, keyring, slice_context(s.name), f"oplog slice {s.name}", fp)
        return src
    return opener


def _decrypted(stack: contextlib.ExitStack, f, s: "Slice", keyring: Keyring | None):
    fp = s.manifest.encryption["key_fingerprint"]
    what = f"oplog slice {s.name}"
    (keyring or Keyring([])).require(fp, what)
    plain = stack.enter_context(tempfile.TemporaryFile(prefix="mender-backup-slice-"))
    shutil.copyfileobj(encryption.decryptor(f, keyring, slice_context(s.name), what, fp), plain, 1 << 20)
    plain.seek(0)
    return plain
