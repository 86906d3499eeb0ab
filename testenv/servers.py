"""Start and stop the real servers of the test environment (built by `make test-env`).

Used by the pytest fixtures, by `make demo` and by the benchmarks, so it has no
pytest dependency. Every server listens on a free 127.0.0.1 port and keeps its
data in a folder the caller owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pymongo

CACHE = Path(os.environ.get("MENDER_BACKUP_TESTENV", Path.home() / ".cache" / "mender-backup-testenv"))
BIN = CACHE / "bin"

MINIO_USER = "mender-test"
MINIO_PASSWORD = "minio-Secret-4711"


class ToolMissing(RuntimeError):
    pass


def tool(name: str) -> Path:
    """Path of a program built by `make test-env`."""
    path = BIN / name
    if not path.exists():
        raise ToolMissing(f"{name} not found in {BIN}: run `make test-env`")
    return path


# Ports are picked below the kernel's ephemeral range (32768-60999 by default): a port picked
# there can be taken, between the pick and the server's bind, by any outgoing connection's
# local end (CI failed on "bind: address already in use" that way). Below 30000 too: the
# NodePorts of a cluster with kube-proxy are 30000-32767.
PORTS = range(20000, 30000)


def free_ports(n: int = 1) -> int:
    """The first of n consecutive ports free now (start.sh's BASE_PORT), below the ephemeral range."""
    import random
    for _ in range(500):
        base = random.randrange(PORTS.start, PORTS.stop - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports in {PORTS.start}-{PORTS.stop}")


def free_port() -> int:
    return free_ports(1)


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within {timeout}s:\n{log.read_text()[-2000:]}")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    workdir: Path
    port: int
    log: Path
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """Hard kill, as in a crash (fault tests)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _spawn(name: str, cmd: list[str], workdir: Path, port: int, env: dict[str, str] | None = None) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
    return Server(name, proc, workdir, port, log, cmd, env or {})


class _Restartable:
    """stop() and restart() for a wrapper holding `server`, ready when `ready()` is true."""

    server: Server

    def ready(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        self.server.stop()

    def kill(self) -> None:
        """Hard kill of the server process, as in a crash (fault tests)."""
        self.server.kill()

    def restart(self) -> None:
        """Start again on the same port and data (after a kill in a fault test)."""
        self.server.stop()
        s = self.server
        self.server = _spawn(s.name, s.cmd, s.workdir, s.port, s.env)
        _wait(self.ready, s.name, self.server.proc, self.server.log)


@dataclass
class MinIO(_Restartable):
    server: Server
    endpoint: str
    access_key: str = MINIO_USER
    secret_key: str = MINIO_PASSWORD

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def env(self) -> dict[str, str]:
        """The environment our tool reads S3 settings from."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/minio/health/ready", timeout=2) as r:
            return r.status == 200


def start_minio(workdir: Path, port: int | None = None) -> MinIO:
    port = port or free_port()
    console = free_port()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [str(tool("minio")), "server", str(data), "--quiet",
           "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{console}"]
    env = {"MINIO_ROOT_USER": MINIO_USER, "MINIO_ROOT_PASSWORD": MINIO_PASSWORD,
           "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CI_CD": "1"}
    server = _spawn("minio", cmd, workdir, port, env)
    endpoint = f"http://127.0.0.1:{port}"

    minio = MinIO(server, endpoint)
    _wait(minio.ready, "minio", server.proc, server.log)
    return minio


@dataclass
class FerretDB(_Restartable):
    server: Server
    url: str

    def client(self, **kw) -> pymongo.MongoClient:
        return pymongo.MongoClient(self.url, serverSelectionTimeoutMS=5000, **kw)

    def ready(self) -> bool:
        return bool(self.client().admin.command("ping"))

    def enable_oplog(self, size: int = 64 << 20, max_entries: int | None = None) -> None:
        """FerretDB v1 logs inserts, updates and deletes to `local.oplog.rs` once that capped
        collection exists (it never creates it); `max_entries` makes it roll over early."""
        opts = {"capped": True, "size": size, **({"max": max_entries} if max_entries else {})}
        self.client().local.command({"create": "oplog.rs", **opts})


def start_ferretdb(workdir: Path, port: int | None = None, user: str | None = None,
                   password: str | None = None, replica_set: str | None = None) -> FerretDB:
    """With user/password, authentication is enforced (SCRAM-SHA-256); the password goes
    by environment, never on the command line. With `replica_set`, the server answers
    `hello` as the primary of that replica set (so mongodump finds `local.oplog.rs` for
    `--oplog`) and trims capped collections every second (so a test can make its oplog
    roll over); `enable_oplog` creates the oplog itself."""
    port = port or free_port()
    data = workdir / "sqlite"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [str(tool("ferretdb")), "--handler=sqlite", f"--sqlite-url=file:{data}/",
           f"--listen-addr=127.0.0.1:{port}", "--debug-addr=-", "--telemetry=disable",
           "--log-level=warn", f"--state-dir={workdir}"]
    if replica_set:
        cmd += [f"--repl-set-name={replica_set}", "--test-capped-cleanup-interval=1s"]
    env = {}
    if user:
        cmd += ["--test-enable-new-auth", "--setup-database=admin"]
        env = {"FERRETDB_SETUP_USERNAME": user, "FERRETDB_SETUP_PASSWORD": password or ""}
    server = _spawn("ferretdb", cmd, workdir, port, env)
    url = f"mongodb://{user}:{password}@127.0.0.1:{port}/" if user else f"mongodb://127.0.0.1:{port}/"
    db = FerretDB(server, url)
    _wait(db.ready, "ferretdb", server.proc, server.log)
    return db


DOCUMENTDB = CACHE / "documentdb"     # the prefix ../shared/documentdb/build.sh made


@dataclass
class DocumentDB:
    """FerretDB v2 on PostgreSQL 15 + DocumentDB (see ../shared/documentdb/README.md):
    MongoDB's index and type semantics (TTL, partial, text indexes, decimal128,
    dotted names), no oplog. Started and stopped by the prefix's start.sh/stop.sh."""

    url: str
    datadir: Path
    env: dict[str, str]
    args: list[str]

    def client(self, **kw) -> pymongo.MongoClient:
        return pymongo.MongoClient(self.url, serverSelectionTimeoutMS=5000, **kw)

    @property
    def port(self) -> int:
        return int(self.args[2])

    def _pid(self) -> int | None:
        try:
            return int((self.datadir / "ferretdb.pid").read_text())
        except (OSError, ValueError):
            return None

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "pgdata" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self) -> list[int]:
        """The server's process trees: FerretDB v2 and the PostgreSQL postmaster (whose
        children are the backends doing the work)."""
        return [p for p in (self._pid(), self._postmaster_pid()) if p]

    def kill(self) -> None:
        """Hard kill of the MongoDB wire server (FerretDB), as in a crash; PostgreSQL keeps running."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while not _exited(pid):
            time.sleep(0.05)
        # a zombie still answers start.sh's `kill -0`: without its pid file, restart() starts anew
        (self.datadir / "ferretdb.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        """Start the killed wire server again, on the same port and data."""
        _documentdb_script("start.sh", self.args, self.env)

    def stop(self) -> None:
        """Stop and delete it. The data is thrown away, so PostgreSQL gets an immediate
        shutdown (SIGQUIT: no checkpoint; 0.1 s where stop.sh takes ~4.5 s, for each of the
        suite's hundred-odd servers); stop.sh when the pids are not known."""
        self.kill()
        pm = self._postmaster_pid()
        if pm:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pm, signal.SIGQUIT)
            deadline = time.monotonic() + 30
            while not _exited(pm) and time.monotonic() < deadline:
                time.sleep(0.05)
        if not pm or not _exited(pm):
            _documentdb_script("stop.sh", [str(self.datadir), "--purge"], self.env)
            return
        shutil.rmtree(self.datadir, ignore_errors=True)


def _exited(pid: int) -> bool:
    """Gone, or a zombie: the servers start.sh daemonizes are PID 1's children, and some
    PID 1s (this machine's) reap them only seconds later."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def _documentdb_script(name: str, args: list[str], env: dict[str, str]) -> str:
    script = DOCUMENTDB / name
    if not script.exists():
        raise ToolMissing(f"{script} not found: run `make test-env`")
    r = subprocess.run([str(script), *args], env={**os.environ, **env}, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"documentdb {name} {args[0]} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r.stdout


def start_documentdb(workdir: Path, user: str | None = None, password: str | None = None) -> DocumentDB:
    """A fresh DocumentDB (about 2 s). With user/password, SCRAM-SHA-256 authentication is
    enforced; the password goes by environment, never on a command line. The data lives
    in a folder under /tmp (as root the servers run as `postgres`, which must reach it and
    which pytest's private temp folders shut out); `workdir/documentdb` links to it."""
    workdir.mkdir(parents=True, exist_ok=True)
    datadir = Path(tempfile.mkdtemp(prefix="mb-docdb-", dir="/tmp"))
    link = workdir / "documentdb"
    if not link.exists():
        link.symlink_to(datadir)
    env = {"FAST": "1"}    # no fsync: test data
    if user:
        env.update(AUTH="1", MONGO_USER=user, MONGO_PASSWORD=password or "")
    args = [str(datadir), str(free_port()), str(free_port())]
    try:
        url = _documentdb_script("start.sh", args, env).strip().splitlines()[-1]
    except Exception:
        subprocess.run([str(DOCUMENTDB / "stop.sh"), str(datadir), "--purge"], capture_output=True)
        raise
    return DocumentDB(url, datadir, env, args)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Pushgateway(_Restartable):
    """The Prometheus Pushgateway the tool pushes its metrics to (issue 13)."""
    server: Server
    url: str

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
            return r.status == 200

    def groups(self) -> list[dict]:
        """Every pushed group, read back over its HTTP API (/api/v1/metrics)."""
        import json
        with urllib.request.urlopen(f"{self.url}/api/v1/metrics", timeout=5) as r:
            return json.loads(r.read())["data"]


def start_pushgateway(workdir: Path) -> Pushgateway:
    port = free_port()
    cmd = [str(tool("pushgateway")), f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    server = _spawn("pushgateway", cmd, workdir, port)
    pg = Pushgateway(server, f"http://127.0.0.1:{port}")
    _wait(pg.ready, "pushgateway", server.proc, server.log)
    return pg


# --- the real Mender Server backend (../shared/mender-server, built by `make test-env`) ----

# build.sh's PREFIX, with the scripts in scripts/ (MENDER_BACKUP_MENDER_SERVER: one built elsewhere,
# with start.sh, smoke.sh and stop.sh copied into its scripts/)
MENDER_SERVER = Path(os.environ.get("MENDER_BACKUP_MENDER_SERVER", CACHE / "mender-server"))
MENDER_SERVICES = ("useradm", "deviceauth", "inventory", "deployments", "workflows", "deviceconnect",
                   "deviceconfig", "iot-manager")


@dataclass(frozen=True)
class MenderBuild:
    """Where the built Mender Server is: PREFIX (bin/, etc/, VERSION) and the shared
    folder's start.sh, smoke.sh and stop.sh (copied by the build; their headers say how)."""
    prefix: Path
    start: Path
    smoke: Path
    stop: Path

    @property
    def version(self) -> str:
        return (self.prefix / "VERSION").read_text().strip()


def mender_server() -> MenderBuild:
    """The Mender Server build of `make test-env`; ToolMissing when there is none."""
    scripts = MENDER_SERVER / "scripts"
    build = MenderBuild(MENDER_SERVER, scripts / "start.sh", scripts / "smoke.sh", scripts / "stop.sh")
    for p in (MENDER_SERVER / "VERSION", MENDER_SERVER / "bin" / "useradm", build.start, build.smoke, build.stop):
        if not p.exists():
            raise ToolMissing(f"Mender Server not built ({p} missing): run `make test-env`")
    return build


@dataclass
class Mender:
    """The Mender services start.sh started in run_dir; `stop()` ends them and deletes run_dir."""
    build: MenderBuild
    run_dir: Path
    env_file: Path
    keys_dir: Path
    log: str = ""

    def urls(self) -> dict[str, str]:
        """service -> base URL, read from start.sh's mender.env."""
        env = dict(line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)
        return {s: env[s.upper().replace("-", "_") + "_URL"] for s in MENDER_SERVICES}

    def smoke(self, mode: str, state: Path, env: dict[str, str] | None = None,
              timeout: float = 180) -> subprocess.CompletedProcess:
        """smoke.sh seed|verify|all: its ok/FAIL lines on stdout; exit 1 if a check failed."""
        return subprocess.run([str(self.build.smoke), mode, str(self.env_file), str(state)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})

    def stop_service(self, name: str) -> None:
        """Stop one service (SIGTERM by its pid file, as stop.sh does): a partial outage."""
        pidfile = self.run_dir / "pids" / f"{name}.pid"
        pid = int(pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not _exited(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        pidfile.unlink()

    def stop(self, purge: bool = True) -> None:
        subprocess.run([str(self.build.stop), str(self.run_dir), *(["--purge"] if purge else [])],
                       capture_output=True, timeout=60)


def start_mender(build: MenderBuild, run_dir: Path, mongo_url: str, minio: MinIO | None, bucket: str,
                 keys_dir: Path | None = None, automigrate: bool = True, script: Path | None = None,
                 storage_env: dict[str, str] | None = None) -> Mender:
    """start.sh on 10 free consecutive ports: the eight services and a private NATS, against
    mongo_url and the bucket on MinIO (~5-10 s). keys_dir: the JWT signing keys to use
    (a restore's must be the original's); default a new pair in run_dir/keys. `script` and
    `storage_env`: another start script and its storage settings (testenv/azure_blob.py's)."""
    keys = keys_dir or run_dir / "keys"
    storage = ({"S3_URL": minio.endpoint, "S3_ACCESS_KEY": minio.access_key, "S3_SECRET_KEY": minio.secret_key}
               if minio else {})
    env = {**os.environ, "MENDER_PREFIX": str(build.prefix), "MONGO_URL": mongo_url, **storage, "S3_BUCKET": bucket,
           **(storage_env or {}), "KEYS_DIR": str(keys), "AUTOMIGRATE": "1" if automigrate else "0",
           "START_TIMEOUT": "90"}
    for _ in range(3):
        env["BASE_PORT"] = str(free_ports(10))
        r = subprocess.run([str(script or build.start), str(run_dir)], capture_output=True, text=True, env=env,
                           timeout=600)
        mender = Mender(build, run_dir, run_dir / "mender.env", keys, r.stderr)
        if r.returncode == 0:
            return mender
        mender.stop(purge=False)
        # another process can still take a picked port before its service binds it: new ports
        if "address already in use" not in r.stderr:
            break
    raise RuntimeError(f"Mender start.sh exited {r.returncode}:\n{r.stderr[-3000:]}")
