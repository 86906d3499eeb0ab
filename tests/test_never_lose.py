"""Nothing kept is ever lost: whatever kills or fails a run, every backup that was
complete before is still complete and verifies, with every artifact it references,
and the oplog slices restores need are still there.

Black-box, through the real `mender-backup` processes, at an S3 destination (MinIO
behind tests/faults.py's S3FaultProxy, which fails chosen requests), an Azure one
(Azurite behind the same proxy, which there only counts requests) and a file:// one.
Random choices come from one seeded `random.Random`: the seed is printed, and
MENDER_BACKUP_FAULT_SEED=<seed> replays a run. MENDER_BACKUP_KILLS sets the kills per
command and destination (default 6, half that at Azure: 15 per command, a new seed every
run; 10 or more for a deeper run).

The invariant (`Snapshot`, `check`), kept simple:
  * protected = every backup whose manifest.json was present before the fault, less
    those a prune's policy may legitimately delete (for `--keep-last N`: all but the N
    newest complete ones);
  * after the fault every protected backup still has every object it had, the same
    size, and the same manifest bytes (so it is still complete and still verifies as it
    did); every artifact its manifest references is at artifacts/<key>, of that size;
  * every oplog slice (manifest and data) present before is still there, unless a
    prune may delete it: it ends before the oldest protected backup's consistency
    point and is not the newest slice (what restores cannot use);
  * `deep=True` also asks the tool: `list --json` shows every protected backup
    complete, and `verify --deep` passes on them (a sample where there are many: the
    byte comparison above covers the rest).

How the tool is run: PYTHONPATH puts this checkout first (the venv's console script
would import mender_backup from wherever the venv was installed from) and
tests/fast_retries (botocore's retries without their sleeps: a 503 that outlasts all 8
attempts costs milliseconds, not ~30 s). "Failing request i past retries" fails request
i and every later request identical to it (method, path, query): its retries, and also
any later call of the same shape (every later DeleteObjects, say): an outage from there
on, the harder case.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testenv import mender_data
from tests.cli import json_events, result_of, run, start
from tests.faults import ACCESS_DENIED, SLOWDOWN, Rule, S3FaultProxy, slow

SEED = int(os.environ.get("MENDER_BACKUP_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))
KILLS = int(os.environ.get("MENDER_BACKUP_KILLS") or 6)
# at Azure (Azurite) half as many: the kills are the same, what differs is the store's commit
# protocol, and an Azure round costs about twice an S3 one (Azurite is a Node.js server)
AZURE_KILLS = max(1, KILLS // 2)
FAST_RETRIES = str(Path(__file__).parent / "fast_retries")
# the console script imports mender_backup from where the venv was installed from (maybe
# another checkout): this checkout's goes first
CHECKOUT = str(Path(__file__).resolve().parents[1])
print(f"test_never_lose: MENDER_BACKUP_FAULT_SEED={SEED}")


@pytest.fixture
def rng(request) -> random.Random:
    """One generator per test, from the printed seed and the test's name."""
    seed = f"{SEED}:{request.node.name}"
    print(f"random seed {SEED} (test {request.node.name})")
    return random.Random(seed)


# ------------------------------------------------------------------ destinations

class Dest:
    """A destination as the tool sees it (url, env) and as the test reads it behind the
    tool's back (objects, read): S3 straight from MinIO, not through the proxy."""

    def __init__(self, kind: str, *, root: Path | None = None, minio=None, bucket: str = "",
                 prefix: str = "", proxy: S3FaultProxy | None = None, azurite=None):
        self.kind, self.root, self.minio, self.bucket, self.prefix, self.proxy = (
            kind, root, minio, bucket, prefix, proxy)
        self.azurite = azurite       # kind "azure": `bucket` is the container
        self.s3 = minio.client() if minio else None

    @property
    def url(self) -> str:
        if self.kind == "azure":
            return self.azurite.url(self.bucket, self.prefix)
        return f"file://{self.root}" if self.kind == "file" else f"s3://{self.bucket}/{self.prefix}"

    def env(self, **more: str) -> dict[str, str]:
        e = {"MENDER_BACKUP_DESTINATION": self.url, "PYTHONPATH": f"{FAST_RETRIES}:{CHECKOUT}"}
        if self.minio is not None:
            e.update(self.minio.env())
        if self.kind == "azure":
            e.update(self.azurite.env("MENDER_BACKUP_DEST_"))
            if self.proxy is not None:
                e["MENDER_BACKUP_DEST_AZURE_STORAGE_BLOB_ENDPOINT"] = f"{self.proxy.endpoint}/{self.azurite.account}"
        elif self.proxy is not None:
            e["AWS_ENDPOINT_URL"] = self.proxy.endpoint
        e.update(more)
        return e

    def objects(self) -> dict[str, int]:
        """key (relative to the destination) -> size; not the locks, not temporary files."""
        out = {}
        if self.kind == "file":
            for p in self.root.rglob("*"):
                if p.is_file() and not p.name.endswith(".partial"):
                    out[str(p.relative_to(self.root))] = p.stat().st_size
        elif self.kind == "azure":
            head = self.prefix + "/"
            out = {k[len(head):]: v for k, v in self.azurite.blobs(self.bucket, head).items()}
        else:
            head = self.prefix + "/"
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=head):
                for o in page.get("Contents", []):
                    out[o["Key"][len(head):]] = o["Size"]
        return {k: v for k, v in out.items() if not k.startswith("locks/")}

    def read(self, key: str) -> bytes:
        if self.kind == "file":
            return (self.root / key).read_bytes()
        if self.kind == "azure":
            return self.azurite.read(self.bucket, f"{self.prefix}/{key}")
        return self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"].read()

    def copy_to(self, prefix: str) -> "Dest":
        """The same objects under another prefix of the bucket or container (not through the proxy)."""
        for key in self.objects():
            if self.kind == "azure":
                self.azurite.copy(self.bucket, f"{self.prefix}/{key}", f"{prefix}/{key}")
            else:
                self.s3.copy_object(Bucket=self.bucket, Key=f"{prefix}/{key}",
                                    CopySource={"Bucket": self.bucket, "Key": f"{self.prefix}/{key}"})
        return Dest(self.kind, minio=self.minio, bucket=self.bucket, prefix=prefix, proxy=self.proxy,
                    azurite=self.azurite)


@pytest.fixture
def proxy(minio):
    p = S3FaultProxy(int(minio.endpoint.rsplit(":", 1)[1]))
    yield p
    p.close()


def azure_dest(request, minio, prefix: str) -> Dest:
    """A container at Azurite, behind a proxy of its own (which counts and fails requests as at S3)."""
    azurite, container = request.getfixturevalue("azurite"), request.getfixturevalue("container")
    in_front = S3FaultProxy(int(azurite.endpoint.split(":")[2].split("/")[0]))
    request.addfinalizer(in_front.close)
    return Dest("azure", minio=minio, bucket=container, prefix=prefix, proxy=in_front, azurite=azurite)


@pytest.fixture(params=["file", "s3", "azure"])
def dest(request, tmp_path, minio, bucket, proxy) -> Dest:
    if request.param == "file":
        return Dest("file", root=tmp_path / "dest", minio=minio)
    if request.param == "azure":
        return azure_dest(request, minio, "never-lose")
    return Dest("s3", minio=minio, bucket=bucket, prefix="never-lose", proxy=proxy)


@pytest.fixture
def source(mongodb, dbname, minio):
    """A small database of the suite's MongoDB and a small artifact bucket."""
    mongodb.client()[dbname].devices.insert_many([{"i": i, "name": f"device-{i}"} for i in range(200)])
    arts = f"a-{uuid.uuid4().hex[:10]}"
    mender_data.seed_bucket(minio.client(), arts, count=4)
    return {"MONGODB_URL": mongodb.url, "MENDER_BACKUP_ARTIFACTS_BUCKET": arts, "_db": dbname,
            "_arts": arts}


def tool_env(dest: Dest, source: dict, **more) -> dict[str, str]:
    return dest.env(**{k: v for k, v in source.items() if not k.startswith("_")}, **more)


def backup_args(source: dict) -> list[str]:
    return ["backup", "--db", source["_db"], "--json"] if "_db" in source else ["backup", "--json"]


# ------------------------------------------------------------------ the invariant

def _optime(d: dict | None) -> tuple[int, int] | None:
    return (d["t"], d["i"]) if d else None


@dataclass
class Snapshot:
    objects: dict[str, int]
    complete: list[str]                       # ids with a manifest, oldest first
    manifests: dict[str, bytes]
    slices: dict[str, dict] = field(default_factory=dict)     # slice name -> its manifest

    def manifest(self, bid: str) -> dict:
        return json.loads(self.manifests[bid])


def snapshot(dest: Dest) -> Snapshot:
    objects = dest.objects()
    ids = sorted(k.split("/")[1] for k in objects if re.fullmatch(r"backups/[^/]+/manifest\.json", k))
    manifests = {bid: dest.read(f"backups/{bid}/manifest.json") for bid in ids}
    # oldest first as the tool sorts them: by the manifest's start time, then the id
    ids.sort(key=lambda b: (json.loads(manifests[b]).get("created_at", ""), b))
    slices = {k[len("oplog/"):-len(".json")]: json.loads(dest.read(k))
              for k in objects if k.startswith("oplog/") and k.endswith(".json")}
    return Snapshot(objects, ids, manifests, slices)


def check(dest: Dest, before: Snapshot, env: dict, may_delete: set[str] = frozenset(),
          prune_slices: bool = False, deep: bool = False, sample: random.Random | None = None,
          what: str = "") -> Snapshot:
    """Fails, naming every loss, unless everything `before` protects is still there."""
    now = snapshot(dest)
    protected = [b for b in before.complete if b not in may_delete]
    lost = []
    for bid in protected:
        head = f"backups/{bid}/"
        for key, size in before.objects.items():
            if key.startswith(head) and not key.endswith("/verified.json") and now.objects.get(key) != size:
                lost.append(f"{key}: {size} bytes before, {now.objects.get(key, 'gone')} now")
        if bid in now.manifests and now.manifests[bid] != before.manifests[bid]:
            lost.append(f"{head}manifest.json changed")
        for a in before.manifest(bid).get("artifacts", []):
            if now.objects.get(f"artifacts/{a['key']}") != a["size"]:
                lost.append(f"artifacts/{a['key']} (backup {bid} references it): "
                            f"{now.objects.get('artifacts/' + a['key'], 'gone')}")
    ends = [_optime((before.manifest(b).get("point_in_time") or {}).get("end")) for b in protected]
    ends = [e for e in ends if e]
    newest = max(before.slices, key=lambda s: _optime(before.slices[s]["to"]), default=None)
    for name, sl in before.slices.items():
        may_go = prune_slices and ends and name != newest and _optime(sl["to"]) < min(ends)
        for key in (f"oplog/{name}.json", f"oplog/{name}.bson.zst"):
            if key in before.objects and now.objects.get(key) != before.objects[key] and not may_go:
                lost.append(f"{key}: {before.objects[key]} bytes before, {now.objects.get(key, 'gone')} now")
    assert not lost, f"lost after {what}:\n  " + "\n  ".join(lost)
    if deep and protected:
        listing = {b["id"]: b for b in result_of(run("list", "--json", env=env))}
        assert all(listing.get(b, {}).get("complete") for b in protected), (protected, listing)
        chosen = protected if sample is None or len(protected) <= 3 else (
            [protected[0], protected[-1]] + sample.sample(protected[1:-1], 1))
        for bid in chosen:
            r = run("verify", bid, "--deep", "--json", env=env, check=False)
            assert r.returncode == 0, f"verify --deep {bid} after {what}: exit {r.returncode}\n{r.stderr[-2000:]}"
    return now


# ------------------------------------------------------------------ kills

def one_error_line(r: subprocess.CompletedProcess) -> str:
    """A failure as the user sees it: exactly one `error:` line, the last, no traceback."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in r.stderr + r.stdout, \
        f"exit {r.returncode}, not one error line:\n{r.stderr[-3000:]}"
    return errors[0]


def finish(p: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def kill_run(args: list[str], env: dict, rng: random.Random, within: float,
             proxy: S3FaultProxy | None = None, requests: int = 0,
             event=None) -> tuple[subprocess.CompletedProcess, str]:
    """Start the tool, then SIGKILL or SIGTERM it (a coin toss): after a random time up to
    `within` seconds; or, every other time, the moment something happens: at S3 the
    proxy sees the run's k-th request (k random up to `requests`), at a file:// one
    `event()` turns true (say, prune's first delete). -> (the run, what was done)."""
    sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
    observe = rng.random() < 0.5
    by_request = observe and proxy is not None and requests > 0
    by_event = observe and not by_request and event is not None
    k = rng.randrange(1, requests + 1) if by_request else 0
    delay = rng.uniform(0.0, within)
    if proxy is not None:
        proxy.reset()
    p = start(*args, env=env)
    if by_request or by_event:
        happened = (lambda: proxy.count >= k) if by_request else event
        deadline = time.monotonic() + 120
        while not happened() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
    else:
        try:
            p.wait(delay)
        except subprocess.TimeoutExpired:
            pass
    p.send_signal(sig)
    r = finish(p)
    how = (f"{sig.name} at request {k}" if by_request else f"{sig.name} when {event.__doc__}" if by_event
           else f"{sig.name} after {delay:.2f}s")
    return r, how


def misbehaved(r: subprocess.CompletedProcess, how: str) -> str:
    """'' for a proper end of a killed run: finished first (0), died before the tool's
    handler was in place (-15), SIGKILL (-9), or SIGTERM handled: 143 and one error line."""
    if r.returncode == 143:
        try:
            one_error_line(r)
        except AssertionError as exc:
            return f"{how}: {exc}"
    elif r.returncode not in (0, -9, -15):
        tail = "\n    ".join(r.stderr.strip().splitlines()[-3:])
        return f"{how}: exit {r.returncode}:\n    {tail}"
    return ""


def timed(args: list[str], env: dict, proxy: S3FaultProxy | None = None) -> tuple[float, int]:
    """A normal run: (seconds it took, requests it made at S3)."""
    if proxy is not None:
        proxy.reset()
    t = time.monotonic()
    run(*args, env=env)
    return time.monotonic() - t, proxy.count if proxy is not None else 0


def kill_loop(name: str, dest: Dest, env: dict, rng: random.Random, args: list[str],
              normal: list[str] | None = None, prepare=None, may_delete=None, prune_slices: bool = False,
              event=None) -> None:
    """KILLS times: prepare(), a snapshot, `args` killed at random, the invariant, then
    `normal` (default: `args` again) must succeed, and the invariant again. At the end,
    the invariant with `deep` against the state before the first kill (before the last
    one's, where a policy may delete)."""
    normal = normal or args
    if prepare:
        prepare()
    within, requests = timed(args, env, dest.proxy)
    first = before = snapshot(dest)
    print(f"{name} at {dest.kind}: a normal run takes {within:.1f}s and {requests} S3 requests")
    wrong = []          # killed runs that did not end properly: reported after the loop
    kills = AZURE_KILLS if dest.kind == "azure" else KILLS
    for i in range(kills):
        if prepare:
            prepare()
            before = snapshot(dest)
        last = before
        happened = None
        if event and dest.kind == "file":
            happened = lambda: event(dest, before)  # noqa: E731
            happened.__doc__ = event.__doc__
        r, how = kill_run(args, env, rng, within, dest.proxy, requests, happened)
        print(f"  kill {i}: {how} -> exit {r.returncode}")
        if bad := misbehaved(r, f"kill {i} ({how})"):
            wrong.append(bad)
        doomed = may_delete(before) if may_delete else set()
        check(dest, before, env, doomed, prune_slices, what=f"kill {i} of {name} ({how}, exit {r.returncode})")
        if dest.proxy is not None:
            dest.proxy.reset()
        n = run(*normal, env=env, check=False)
        assert n.returncode == 0, (f"the run after kill {i} of {name} ({how}, exit {r.returncode}) failed: "
                                   f"exit {n.returncode}\n{n.stderr[-3000:]}")
        before = check(dest, before, env, doomed, prune_slices, what=f"the run after kill {i} of {name}")
    ref = last if may_delete else first
    check(dest, ref, env, may_delete(ref) if may_delete else set(), prune_slices, deep=True, sample=rng,
          what=f"{kills} kills of {name}")
    assert not wrong, f"{len(wrong)} of {kills} killed runs of {name} ended badly:\n" + "\n".join(wrong)


def writing_backup(dest: Dest, before: Snapshot) -> bool:
    """the archive is being written"""
    return any((dest.root / "backups").rglob("*.partial"))


def writing_slice(dest: Dest, before: Snapshot) -> bool:
    """the oplog slice is being written"""
    return any((dest.root / "oplog").glob("*.partial"))


def first_delete(dest: Dest, before: Snapshot) -> bool:
    """prune deleted its first manifest"""
    return len(list((dest.root / "backups").glob("*/manifest.json"))) < len(before.complete)


def all_but_newest(n: int):
    return lambda snap: set(snap.complete[:-n]) if n else set(snap.complete)


# ------------------------------------------------------------------ kills, per command

def test_backup_killed_at_random(dest, source, rng):
    env = tool_env(dest, source)
    run(*backup_args(source), env=env)
    kill_loop("backup", dest, env, rng, backup_args(source), event=writing_backup)


def test_prune_killed_at_random(dest, source, rng):
    """Each round: prune --keep-last 2 killed, then `backup --keep-last 3` (a new backup,
    then the same kind of prune) must succeed: the next round has one to prune again.
    A prune may delete all but the 2 newest complete backups; nothing else."""
    env = tool_env(dest, source)
    for _ in range(3):
        run(*backup_args(source), env=env)
    kill_loop("prune", dest, env, rng, ["prune", "--keep-last", "2", "--json"],
              normal=[*backup_args(source), "--keep-last", "3"],
              may_delete=all_but_newest(2), prune_slices=True, event=first_delete)


def test_verify_killed_at_random(dest, source, rng):
    env = tool_env(dest, source)
    for _ in range(2):
        run(*backup_args(source), env=env)
    kill_loop("verify", dest, env, rng, ["verify", "--deep", "--json"])


def test_restore_killed_at_random(dest, source, ferretdb, rng):
    """Into another server (FerretDB) and another bucket; restore only reads the destination."""
    env = tool_env(dest, source)
    run(*backup_args(source), env=env)
    target_bucket = f"r-{uuid.uuid4().hex[:10]}"
    dest.minio.client().create_bucket(Bucket=target_bucket)
    renv = {**env, "MENDER_BACKUP_RESTORE_MONGODB_URL": ferretdb.url,
            "MENDER_BACKUP_RESTORE_ARTIFACTS_BUCKET": target_bucket}
    kill_loop("restore", dest, renv, rng, ["restore", "latest", "--drop", "--json"])


@pytest.fixture
def replica_source(new_replica_set, minio):
    """FerretDB v1 with an oplog (the only server of ours that has one)."""
    server = new_replica_set()
    client = server.client()
    client.pitr.docs.insert_many([{"i": i, "v": "x" * 100} for i in range(100)])
    return server


def test_oplog_killed_at_random(dest, replica_source, rng):
    """Each round: new writes, `oplog` killed, the invariant, `oplog` again must succeed.
    A consistent backup first, so slices start from it."""
    env = dest.env(MONGODB_URL=replica_source.url)
    client = replica_source.client()
    run("backup", "--json", env=env)
    n = iter(range(10**6))

    def prepare():
        client.pitr.docs.insert_many([{"i": next(n), "v": os.urandom(200)} for _ in range(50)])

    kill_loop("oplog", dest, env, rng, ["oplog", "--json"], prepare=prepare, event=writing_slice)
    listing = result_of(run("list", "--json", env=env))
    assert listing[-1]["restorable_until"], listing


# ------------------------------------------------------------------ prune, failing each of its requests

def s3_dest(minio, bucket, proxy, prefix="p") -> Dest:
    return Dest("s3", minio=minio, bucket=bucket, prefix=prefix, proxy=proxy)


def deleted_by(proxy: S3FaultProxy, bucket: str, after: float = 0.0) -> list[str]:
    """The keys the requests seen (after `after`) asked S3 to delete."""
    keys = []
    for s in proxy.requests:
        if s.arrived < after:
            continue
        if s.method == "DELETE" and not s.upload_id:
            keys.append(s.key(bucket))
        keys.extend(s.deleted)
    return keys


@pytest.fixture(params=["s3", "azure"])
def prunable(request, minio, bucket, proxy, source):
    """Four backups at S3 or Azure: the oldest references an artifact no other does (prune
    --keep-last 2 deletes two backups and that artifact), the newest one that only it does.
    The artifacts are Mender's, in MinIO, either way."""
    d = s3_dest(minio, bucket, proxy, "template") if request.param == "s3" else azure_dest(request, minio, "template")
    env = tool_env(d, source)
    s3 = minio.client()
    arts = source["_arts"]
    ids = []
    for i in range(4):
        if i == 3:
            s3.put_object(Bucket=arts, Key="newest-only.mender", Body=os.urandom(3000))
        ids.append(result_of(run(*backup_args(source), env=env))["id"])
        if i == 0:
            s3.delete_object(Bucket=arts, Key=sorted(o["Key"] for o in s3.list_objects_v2(Bucket=arts)["Contents"])[0])
    return d, ids


def test_prune_with_each_request_failing_past_retries(prunable, source, minio, rng):
    """Record the requests of `prune --keep-last 2` on a copy; then, for each request
    index i, on a fresh copy: fail request i (and its retries) with 503 SlowDown. Prune
    exits 0, or non-zero with one error line; it deleted nothing the policy keeps."""
    template, ids = prunable
    proxy = template.proxy
    args = ["prune", "--keep-last", "2", "--json"]
    before = snapshot(template)
    doomed = set(before.complete[:-2])
    assert len(before.complete) == 4

    rec = template.copy_to("recorded")
    proxy.reset()
    run(*args, env=tool_env(rec, source))
    recorded = [(s.method, s.path.replace("/recorded/", "/<p>/"), s.query) for s in proxy.requests]
    assert any(s.deleted or s.method == "DELETE" or "comp=batch" in s.query      # Azure deletes in Blob Batches
               for s in proxy.requests), "the recorded prune deleted nothing"
    check(rec, before, tool_env(rec, source), doomed, prune_slices=True, what="the recorded prune")
    print(f"prune makes {len(recorded)} requests:\n  " + "\n  ".join(" ".join(r) for r in recorded))

    outcomes, wrong = [], []
    for i in range(len(recorded)):
        d = template.copy_to(f"fail-{i}")
        env = tool_env(d, source)
        proxy.reset()
        rule = proxy.add(Rule(SLOWDOWN, index=i))
        r = run(*args, env=env, check=False)
        req = " ".join(recorded[i])
        outcomes.append(f"{i} {req}: exit {r.returncode}, {rule.hits} attempt(s) failed")
        try:            # every index is tried; what went wrong is reported at the end
            assert rule.hits >= 1, f"request {i} ({req}) never came: the run differs from the recording"
            if r.returncode != 0:
                one_error_line(r)
            check(d, before, env, doomed, prune_slices=True, what=f"prune with request {i} ({req}) failing")
        except AssertionError as exc:
            wrong.append(str(exc))
    print("\n".join(outcomes))
    assert not wrong, f"{len(wrong)} of {len(recorded)} faulted prunes went wrong:\n" + "\n".join(wrong)
    proxy.reset()
    check(d, before, tool_env(d, source), doomed, prune_slices=True, deep=True, what="the last faulted prune")


def test_prune_deletes_nothing_when_a_manifest_cannot_be_read(prunable, source, minio):
    """403 on the newest backup's manifest: prune cannot know what that backup needs,
    so it must delete nothing at all (a clear error is right; guessing is not)."""
    template, ids = prunable
    proxy = template.proxy
    d = template.copy_to("denied")
    env = tool_env(d, source)
    before = snapshot(d)
    proxy.reset()
    proxy.add(Rule(ACCESS_DENIED, method="GET", path=f"*/backups/{ids[3]}/manifest.json"))
    r = run("prune", "--keep-last", "2", "--json", env=env, check=False)
    if r.returncode != 0:
        one_error_line(r)
    gone = sorted(set(before.objects) - set(snapshot(d).objects))
    proxy.reset()
    check(d, before, env, what=f"prune with a 403 on {ids[3]}'s manifest (exit {r.returncode})")
    assert gone == [], f"prune deleted {gone} (exit {r.returncode})"
    check(d, before, env, deep=True, what="prune with a 403 on a manifest")


@pytest.mark.parametrize("prunable", ["s3"], indirect=True)    # it waits on S3's DeleteObjects
def test_sigterm_during_prune_deletes_nothing_more(prunable, source, proxy):
    """SIGTERM while prune's first delete is in flight: exit 143, one error line, and no
    delete request after it but the release of its own lock."""
    template, ids = prunable
    d = template.copy_to("term")
    env = tool_env(d, source)
    before = snapshot(d)
    proxy.reset()
    proxy.add(Rule(slow(2.0), method="POST", query="delete", times=1))
    p = start("prune", "--keep-last", "1", "--json", env=env)
    proxy.wait_for(lambda px: px.matching(method="POST", query="delete"), p, "prune's first delete")
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    r = finish(p)
    seen = "\n".join(f"{s.arrived - t:+.2f}s {s.method} {s.path}?{s.query[:30]} {s.status} {s.fault} "
                     f"{' '.join(s.deleted)[:120]}" for s in proxy.requests)
    assert r.returncode == 143, f"exit {r.returncode}\n{r.stderr[-3000:]}\n{r.stdout[-3000:]}\nrequests:\n{seen}"
    assert "terminated" in one_error_line(r)
    later = [k for k in deleted_by(proxy, d.bucket, after=t) if not k.startswith(f"{d.prefix}/locks/")]
    assert later == [], f"deleted after SIGTERM: {later}"
    proxy.reset()
    check(d, before, env, set(before.complete[:-1]), prune_slices=True, deep=True, what="SIGTERM during prune")
    # and the next prune finishes the job
    run("prune", "--keep-last", "1", env=env)
    check(d, before, env, set(before.complete[:-1]), prune_slices=True, what="the prune after")


# ------------------------------------------------------------------ three commands at once

PART = 5 << 20


@pytest.mark.parametrize("dest", ["file", "s3"], indirect=True)
def test_backup_oplog_and_prune_at_once(dest, new_replica_set, rng):
    """`oplog` shipping a slice bigger than a multipart part (random bytes: zstd cannot
    shrink them), and, while its upload is open, `backup` and `prune` start. Each
    succeeds or fails cleanly (exit 4: the lock is held); none aborts another's upload;
    the invariant holds, and the slice is complete. Not at Azure: nothing there aborts an
    upload (uncommitted blocks are left for Azure to drop), and the locks are the same."""
    server = new_replica_set(max_entries=None)
    client = server.client()
    env = dest.env(MONGODB_URL=server.url, MENDER_BACKUP_S3_PART_SIZE=str(PART))
    client.pitr.small.insert_many([{"i": i} for i in range(50)])
    for _ in range(2):
        run("backup", "--json", env=env)
    for j in range(8):                       # ~8 MiB of oplog that does not compress
        client.pitr.blobs.insert_many([{"j": j, "k": k, "b": os.urandom(100 << 10)} for k in range(10)])
    before = snapshot(dest)
    px = dest.proxy
    if px is not None:
        px.reset()
        # the oplog's parts go slowly: its upload stays open while the others run
        px.add(Rule(slow(1.5), method="PUT", query="partNumber", agent="app/oplog"))
    envs = {name: {**env, "AWS_SDK_UA_APP_ID": name} for name in ("oplog", "backup", "prune")}
    oplog = start("oplog", "--json", env=envs["oplog"])
    if px is not None:
        px.wait_for(lambda p: p.matching(method="POST", query="uploads", agent="app/oplog"), oplog,
                    "the oplog's multipart upload began", timeout=120)
    else:
        part = lambda: any(p.name.endswith(".partial") for p in (dest.root / "oplog").glob("*"))  # noqa: E731
        deadline = time.monotonic() + 120
        while not part() and oplog.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    backup = start("backup", "--json", env=envs["backup"])
    prune = start("prune", "--keep-last", "3", "--json", env=envs["prune"])
    results = {"oplog": finish(oplog), "backup": finish(backup), "prune": finish(prune)}
    report = {k: (r.returncode, r.stderr.strip().splitlines()[-1:] ) for k, r in results.items()}
    print(report)
    if px is not None:
        created = {s.upload_id: s.app for s in px.requests
                   if s.method == "POST" and "uploads" in s.query.split("&")[0] and s.upload_id}
        assert any(app == "oplog" for app in created.values()), "the oplog slice was not a multipart upload"
        foreign = [f"{s.app} aborted {created.get(s.upload_id, '?')}'s upload of {s.key(dest.bucket)}"
                   for s in px.requests if s.method == "DELETE" and s.upload_id
                   and created.get(s.upload_id) != s.app]
        assert foreign == [], f"{foreign}; exits {report}"
    for name, r in results.items():
        if r.returncode != 0:
            err = one_error_line(r)
            assert r.returncode == 4 and "lock" in err, f"{name} failed: {report}"
    assert results["oplog"].returncode == 0, f"the oplog run failed: {report}"
    shipped = result_of(results["oplog"])
    assert shipped["shipped"] >= 80 and shipped["slice"], shipped
    if px is not None:
        px.reset()
    check(dest, before, env, deep=True, what="backup, oplog and prune at once")
    after = snapshot(dest)
    data_key = shipped["slice"]["key"]
    assert data_key in after.objects and data_key.replace(".bson.zst", ".json") in after.objects, shipped
    big = after.objects[data_key]
    assert big > PART, f"the slice ({big} bytes) fits in one part"


# ------------------------------------------------------------------ the proxy itself

def test_the_proxy_fails_what_it_is_told_and_records_everything(minio, bucket, proxy):
    import io

    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    from tests.faults import RESET
    c = boto3.client("s3", endpoint_url=proxy.endpoint, aws_access_key_id=minio.access_key,
                     aws_secret_access_key=minio.secret_key, region_name="us-east-1",
                     config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}))   # 1 retry
    c.put_object(Bucket=bucket, Key="x/manifest.json", Body=b"hi")
    proxy.reset()
    proxy.add(Rule(SLOWDOWN, method="GET", path="*/manifest.json"))          # past every retry
    with pytest.raises(Exception, match="SlowDown"):
        c.get_object(Bucket=bucket, Key="x/manifest.json")
    assert [s.status for s in proxy.requests] == [503] * 2
    proxy.reset()
    proxy.add(Rule(ACCESS_DENIED, index=1))
    c.head_object(Bucket=bucket, Key="x/manifest.json")
    with pytest.raises(Exception, match="403"):
        c.head_object(Bucket=bucket, Key="x/manifest.json")
    proxy.reset()
    proxy.add(Rule(RESET, index=0, sticky=False))                           # retried: the second try passes
    assert c.get_object(Bucket=bucket, Key="x/manifest.json")["Body"].read() == b"hi"
    assert [(s.fault, s.status) for s in proxy.requests] == [("reset", 0), ("", 200)]
    proxy.reset()
    proxy.add(Rule(slow(0.3), method="PUT", query="partNumber", times=1))
    t = time.monotonic()
    c.upload_fileobj(io.BytesIO(os.urandom(10 << 20)), bucket, "big",
                     Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    assert time.monotonic() - t >= 0.3
    c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x/manifest.json"}, {"Key": "big"}]})
    create = next(s for s in proxy.requests if s.method == "POST" and s.query == "uploads")
    parts = [s for s in proxy.requests if s.method == "PUT" and "partNumber" in s.query]
    assert create.upload_id and {s.upload_id for s in parts} == {create.upload_id} and len(parts) == 2
    assert [s.fault for s in parts].count("delay") == 1
    assert deleted_by(proxy, bucket) == ["x/manifest.json", "big"]
