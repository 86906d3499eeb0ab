"""Our container image: built as users build it (`make image`), run as the chart runs it.

podman keeps its storage and settings in the test environment's cache (testenv/build.sh
wrote them; nothing in /var/lib/containers). The base is the Debian image with Python
that `make test-env` made from Debian's packages (the public Python image is on a
registry these machines cannot reach). An image is tagged by a hash of what goes into
it, so an unchanged checkout is built once; its OCI archive is what the node imports.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testenv.servers import CACHE, ToolMissing

ROOT = Path(__file__).resolve().parent.parent
BASE = "localhost/mender-backup-base:bookworm"
BASE_PYTHON = "3.11"                 # Debian bookworm's python3
IMAGES = CACHE / "images"
UID = 10001
KEEP = 4                             # test images kept in the cache
# what the image is built from (.dockerignore lets in only the lock and the wheels,
# which `make image` makes from these)
SOURCES = ("Dockerfile", ".dockerignore", "Makefile", "pyproject.toml", "README.md", "requirements/runtime.txt")


def podman_env() -> dict[str, str]:
    conf = CACHE / "podman" / "containers.conf"
    if not conf.exists():
        raise ToolMissing(f"{conf} not found: run `make test-env`")
    return {**os.environ, "CONTAINERS_CONF": str(conf),
            "CONTAINERS_STORAGE_CONF": str(CACHE / "podman" / "storage.conf")}


def podman(*args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {args[0]} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def source_hash() -> str:
    h = hashlib.sha256()
    files = sorted([*(ROOT / s for s in SOURCES), *(ROOT / "mender_backup").rglob("*.py")])
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@dataclass
class Image:
    ref: str        # e.g. localhost/mender-backup:t-0123456789ab
    archive: Path   # its OCI archive (podman save --format oci-archive)


def build(log: Path) -> Image:
    """`make image` with podman on the Debian base (about 30 s), unless this checkout's
    image is already built; only the newest test images are kept."""
    import fcntl
    IMAGES.mkdir(parents=True, exist_ok=True)
    with open(IMAGES / ".build.lock", "w") as lock:     # two test workers: one builds, the other waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(log)


def _build(log: Path) -> Image:
    tag = f"t-{source_hash()}"
    ref, archive = f"localhost/mender-backup:{tag}", IMAGES / f"mender-backup-{tag}-oci.tar"
    if archive.exists() and podman("image", "exists", ref, check=False).returncode == 0:
        return Image(ref, archive)
    with open(log, "w") as out:
        r = subprocess.run(["make", "-C", str(ROOT), "image", "ENGINE=podman", f"IMAGE={ref}", f"BASE={BASE}",
                            f"IMAGE_PYTHON={BASE_PYTHON}"], env=podman_env(), stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        last = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:]
        raise RuntimeError(f"make image exited {r.returncode}: {last[0] if last else ''} (log: {log})")
    podman("save", "--format", "oci-archive", "-o", f"{archive}.tmp", ref)
    os.replace(f"{archive}.tmp", archive)
    # keep the newest few: other checkouts sharing the cache may be using theirs
    builds = sorted(IMAGES.glob("mender-backup-t-*-oci.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[KEEP:]:
        podman("rmi", f"localhost/mender-backup:{old.name[len('mender-backup-'):-len('-oci.tar')]}", check=False)
        old.unlink(missing_ok=True)
    return Image(ref, archive)


def run(image: Image, args: list[str], env: dict[str, str], timeout: float = 300,
        entrypoint: str | None = None) -> subprocess.CompletedProcess:
    """The image as the chart's pod runs it: read-only root, uid/gid 10001, /tmp a
    tmpfs, no capabilities, no privilege escalation, the host's network (the servers
    are on 127.0.0.1) and exactly `env` (passed by file: no secret in any argv)."""
    with tempfile.NamedTemporaryFile("w", prefix="env-", suffix=".list") as f:
        os.chmod(f.name, 0o600)
        f.write("".join(f"{k}={v}\n" for k, v in env.items()))
        f.flush()
        # --read-only-tmpfs=false: else podman mounts writable /var/tmp and /run, which the pod has not
        return podman("run", "--rm", "--network", "host", "--read-only", "--read-only-tmpfs=false",
                      "--user", f"{UID}:{UID}",
                      "--tmpfs", "/tmp:rw,size=1g,mode=1777", "--cap-drop", "ALL",
                      "--security-opt", "no-new-privileges", "--env-file", f.name,
                      *(["--entrypoint", entrypoint] if entrypoint else []), image.ref, *args,
                      check=False, timeout=timeout)
