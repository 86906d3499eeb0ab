"""The real Mender chart on a real one-node Kubernetes, for the tests that move a live release:
../shared/mender-on-k8s's recipe (kube-apiserver, kubelet, containerd, kube-proxy, CoreDNS, a
CNI bridge; the Mender images built from the real v4.1.3 binaries), run from its own scripts.

`make test-env` builds what the scripts need into the cache: kube-proxy and kubectl in the one
Kubernetes build, CoreDNS, and the Mender images (testenv/build.sh). Pods reach the host at
`host_ip` (10.236.0.1); `forward()` relays a server that listens on 127.0.0.1 to that address,
so the stores' URLs in Mender's values are `mongodb://host_ip:PORT/` for the pods and the host
alike. Older Menders (testenv/mender-version.sh) can be installed beside, each in a namespace of its
own: v4.0.1 under chart 6.9.0 for the cross-version restore, v4.1.2 under 7.9.4 for the guarded
upgrade. The cluster holds the node lock
of testenv/node.py while it runs: the two share
/var/log/containers and iptables, so one runs at a time.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testenv.node import _lock
from testenv.servers import CACHE, MENDER_SERVER, ToolMissing, tool

SHARED_LINK = CACHE / "shared"                  # build.sh links the shared folder it built from
RECIPE = SHARED_LINK / "mender-on-k8s"
CHARTS = SHARED_LINK / "mender-helm"
MENDER_IMAGES = CACHE / "images" / "mender" / "mender-images.tar"


@dataclass(frozen=True)
class OlderMender:
    """An older Mender Server and its chart (testenv/build.sh's mender_version builds both the
    host binaries, for smoke.sh, and the images)."""
    version: str
    chart: str

    @property
    def prefix(self) -> Path:
        return CACHE / f"mender-server-{self.version}"

    @property
    def images(self) -> Path:
        return CACHE / "images" / f"mender-{self.version}" / "mender-images.tar"

    @property
    def values(self) -> Path:
        return Path(__file__).resolve().parent / f"values-mender-{self.chart}.yaml"


CROSS = OlderMender("v4.0.1", "6.9.0")            # its backup is restored into the 8.2.1 release
UPGRADE_FROM = OlderMender("v4.1.2", "7.9.4")     # upgraded to 8.2.1 by helm mender-backup upgrade
OLDER = (CROSS, UPGRADE_FROM)
BIN = CACHE / "bin"
NAMESPACE = "mender"


def need() -> None:
    """ToolMissing unless `make test-env` built everything the recipe runs."""
    for name in ("etcd", "kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler",
                 "kube-proxy", "kubectl", "coredns", "helm3"):
        tool(name)
    for path in (RECIPE / "cluster-up.sh", MENDER_IMAGES, MENDER_SERVER / "scripts" / "smoke.sh",
                 *(p for m in OLDER for p in (m.prefix / "scripts" / "smoke.sh", m.images))):
        if not path.exists():
            raise ToolMissing(f"{path} missing: run `make test-env`")


@dataclass
class MenderCluster:
    workdir: Path
    lock: object

    @property
    def b(self) -> Path:
        return self.workdir / "cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.b / "admin.kubeconfig"

    @property
    def host_ip(self) -> str:
        """The address at which pods reach the host (the bridge's)."""
        env = (self.b / "cluster.env").read_text()
        return next(ln.split("=", 1)[1] for ln in env.splitlines() if ln.startswith("HOST_IP="))

    def mender_env(self, namespace: str = NAMESPACE) -> Path:
        """install.sh's file for smoke.sh: the services' ClusterIPs (unchanged by upgrades);
        install.sh always writes mender.env, `install_mender` keeps other namespaces' apart."""
        return self.b / ("mender.env" if namespace == NAMESPACE else f"mender-{namespace}.env")

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "B": str(self.b), "TOOLS": str(BIN), "K8S_BIN": str(BIN),
                "PATH": f"{BIN}:{os.environ['PATH']}", "KUBECONFIG": str(self.kubeconfig),
                "MENDER_PREFIX": str(MENDER_SERVER), "HELM": str(BIN / "helm3"), **extra}

    def script(self, name: str, *args: str, timeout: float = 600, **env: str) -> str:
        r = subprocess.run([str(RECIPE / name), *args], capture_output=True, text=True, timeout=timeout,
                           env=self.env(**env))
        if r.returncode != 0:
            raise RuntimeError(f"{name} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r.stdout

    def kubectl(self, *args: str, timeout: float = 300) -> str:
        r = subprocess.run([str(BIN / "kubectl"), *args], capture_output=True, text=True, timeout=timeout,
                           env=self.env())
        if r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
        return r.stdout

    def get(self, path: str) -> dict:
        """An API path, read as the admin (what the tests judge by, not our code's client)."""
        return json.loads(self.kubectl("get", "--raw", path))

    def secret(self, name: str, namespace: str = NAMESPACE) -> dict[str, bytes]:
        data = self.get(f"/api/v1/namespaces/{namespace}/secrets/{name}").get("data", {})
        return {k: base64.b64decode(v) for k, v in data.items()}

    def forward(self, *ports: int) -> None:
        """Relay 127.0.0.1:PORT to host_ip:PORT, for the pods."""
        self.script("forward.sh", *map(str, ports), timeout=60)

    def unforward(self, *ports: int) -> None:
        self.script("forward.sh", "--stop", *map(str, ports), timeout=60)

    def install_mender(self, mongo_url: str, s3_url: str, access_key: str, secret_key: str, bucket: str,
                       chart: str = "8.2.1", values: Path | None = None, namespace: str = NAMESPACE,
                       prefix: Path = MENDER_SERVER, timeout: float = 900) -> str:
        """helm install (release "mender") of the real chart with the recipe's values.yaml
        (install.sh: waits for the migration hooks and every workload Ready, writes the
        namespace's mender env with `prefix`, the host binaries of that Mender version, for
        smoke.sh). Returns its output."""
        main_env = self.mender_env()
        kept = main_env.read_bytes() if namespace != NAMESPACE and main_env.exists() else None
        try:
            return self.script("install.sh", timeout=timeout, MONGO_URL=mongo_url, S3_URL=s3_url,
                               S3_ACCESS_KEY=access_key, S3_SECRET_KEY=secret_key, S3_BUCKET=bucket,
                               CHART=str(CHARTS / f"mender-{chart}.tgz"), NAMESPACE=namespace,
                               VALUES=str(values or RECIPE / "values.yaml"), TIMEOUT="12m", MENDER_PREFIX=str(prefix))
        finally:
            if namespace != NAMESPACE and main_env.exists():
                main_env.replace(self.mender_env(namespace))
            if kept is not None:
                main_env.write_bytes(kept)
                main_env.chmod(0o600)

    def smoke(self, mode: str, state: Path, namespace: str = NAMESPACE, prefix: Path = MENDER_SERVER,
              timeout: float = 300) -> subprocess.CompletedProcess:
        """../shared/mender-server's smoke.sh seed|verify against the namespace's Services, as the
        copy in `prefix`/scripts (that of the Mender version installed there) has it."""
        return subprocess.run([str(prefix / "scripts" / "smoke.sh"), mode, str(self.mender_env(namespace)),
                               str(state)], capture_output=True, text=True, timeout=timeout, env=self.env())

    def stop(self) -> None:
        """teardown.sh: every process, container, mount, rule and cgroup of the cluster."""
        try:
            subprocess.run([str(RECIPE / "teardown.sh")], capture_output=True, text=True, timeout=300,
                           env=self.env())
        finally:
            self.lock.close()


def start(workdir: Path, images: list[Path] = (), timeout: float = 600) -> MenderCluster:
    """cluster-up.sh with every Mender version's images and `images` imported (a fresh cluster; ~20 s)."""
    need()
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = MenderCluster(workdir, _lock())
    archives = " ".join(str(p) for p in [MENDER_IMAGES, *(m.images for m in OLDER), *images])
    try:
        cluster.script("cluster-up.sh", timeout=timeout, IMAGES=archives,
                       PAUSE_ARCHIVE=str(CACHE / "images" / "pause-oci.tar"))
    except BaseException:
        cluster.lock.close()       # cluster-up.sh tore itself down
        raise
    return cluster
