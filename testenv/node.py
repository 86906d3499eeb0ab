"""A Kubernetes node that runs pods, on the cluster of testenv/kube.py: Debian's
containerd with a private config, root, state and socket, then the kubelet,
kube-controller-manager and kube-scheduler (v1.37.2, built by `make test-env`).

What these machines need, each an error first (../shared/k8s-node/README.md): runc;
containerd's `restrict_oom_score_adj` (no CAP_SYS_RESOURCE) and a pause image built
here (no registry); the kubelet with `failCgroupV1: false` (cgroup v1 hybrid),
cgroupfs, `failSwapOn: false` and the machine's eth0 address as node IP (a loopback
one is refused). Pods must use `hostNetwork` (the test servers are on 127.0.0.1) and
images imported with `import_image` (`imagePullPolicy: Never`).

The kubelet's cgroups (/sys/fs/cgroup/*/kubepods) and /var/log/containers are the
machine's: one node runs at a time, a lock file in the cache makes test sessions wait.
`stop()` removes every trace: pods, containers, mounts, cgroups, the kubelet's
iptables chains and log links.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from testenv.servers import CACHE, Server, ToolMissing, _spawn, _wait, free_port, tool

NAME = "mb-node"
PAUSE = "localhost/pause:testenv"
PAUSE_ARCHIVE = CACHE / "images" / "pause-oci.tar"
CONTAINER_LOGS = Path("/var/log/containers")     # the kubelet links every container's log here, always


def node_ip() -> str:
    """The address of the interface of the default route (no packet is sent)."""
    out = subprocess.run(["ip", "-4", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True).stdout
    m = re.search(r"\bsrc (\d+\.\d+\.\d+\.\d+)", out)
    if not m:
        raise RuntimeError(f"no IPv4 address with a default route for the node: {out.strip()!r}")
    return m.group(1)


def _chains() -> set[tuple[str, str, str]]:
    found = set()
    for ipt in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            r = subprocess.run([ipt, "-t", table, "-S"], capture_output=True, text=True)
            found |= {(ipt, table, ln.split()[1]) for ln in r.stdout.splitlines() if ln.startswith("-N KUBE-")}
    return found


@dataclass
class Node:
    cluster: object
    workdir: Path
    ip: str
    socket: Path
    servers: list[Server] = field(default_factory=list)
    chains_before: set = field(default_factory=set)
    lock: object = None

    def ctr(self, *args: str) -> str:
        r = subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args[:2])} exited {r.returncode}: {r.stderr.strip()[-1000:]}")
        return r.stdout

    def import_image(self, archive: Path) -> None:
        """An OCI archive into containerd's k8s.io namespace, where the kubelet finds it."""
        self.ctr("images", "import", str(archive))

    def pull_over_plain_http(self, host: str) -> None:
        """containerd reaches the registry at host (127.0.0.1:PORT) over HTTP, as for a registry
        on the node itself (containerd's per-registry hosts.toml, read at each pull)."""
        d = self.workdir / "containerd" / "certs.d" / host
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(f'server = "http://{host}"\n[host."http://{host}"]\n'
                                      f'  capabilities = ["pull", "resolve"]\n')

    def log(self, name: str) -> str:
        path = self.workdir / name / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        try:
            for s in reversed(self.servers[2:]):      # scheduler, controller-manager: nothing recreates pods
                s.stop()
            self._delete_pods()
        finally:
            for s in reversed(self.servers[1:]):      # the kubelet (and anything left)
                s.stop()
            self._remove_containers()
            self.servers[0].stop()                    # containerd
            self._clean_machine()
            if self.lock:
                self.lock.close()

    def _delete_pods(self) -> None:
        """Every pod deleted through the API and gone (the kubelet stopped its containers)."""
        api = self.cluster
        try:
            pods = api.get("/api/v1/pods")["items"]
            for p in pods:
                m = p["metadata"]
                api.request("DELETE", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}",
                            {"gracePeriodSeconds": 0})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(
                    p["spec"].get("nodeName") == NAME for p in api.get("/api/v1/pods")["items"]):
                time.sleep(0.5)
        except Exception:
            pass      # the API is down: the containers are removed below anyway

    def _remove_containers(self) -> None:
        if not self.socket.exists():
            return
        for run in (["tasks", "kill", "--signal", "SIGKILL"], ["tasks", "delete", "--force"], ["containers", "delete"]):
            listing = "tasks" if run[0] == "tasks" else "containers"
            try:
                ids = [ln.split()[0] for ln in self.ctr(listing, "ls").splitlines()[1:] if ln.strip()]
            except RuntimeError:
                return
            for cid in ids:
                subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *run, cid],
                               capture_output=True)
            if run[1] == "kill":
                time.sleep(1)

    def _clean_machine(self) -> None:
        # the kubelet's and containerd's mounts (pod volumes, overlays, shm), innermost first
        mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(str(self.workdir))), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        for d in Path("/sys/fs/cgroup").glob("*/kubepods"):
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            try:
                d.rmdir()
            except OSError:
                pass
        for ipt, table, chain in sorted(_chains() - self.chains_before):
            for rule in subprocess.run([ipt, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines():
                if rule.startswith("-A ") and f"-j {chain}" in rule:
                    subprocess.run([ipt, "-t", table, "-D", *rule.split()[1:]], capture_output=True)
        for ipt, table, chain in sorted(_chains() - self.chains_before):
            subprocess.run([ipt, "-t", table, "-F", chain], capture_output=True)
            subprocess.run([ipt, "-t", table, "-X", chain], capture_output=True)
        if CONTAINER_LOGS.is_dir():
            for link in CONTAINER_LOGS.iterdir():
                if link.is_symlink() and str(link.readlink()).startswith(str(self.workdir)):
                    link.unlink()
            try:
                CONTAINER_LOGS.rmdir()
            except OSError:
                pass


def _lock(timeout: float = 900) -> object:
    path = CACHE / "node.lock"
    f = open(path, "w")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"another test session has held the node ({path}) for {timeout:.0f}s")
            time.sleep(1)


def start_node(cluster, workdir: Path, timeout: float = 120) -> Node:
    """containerd, kubelet, controller-manager and scheduler for `cluster`; returns when
    the node is Ready. `cluster` has the kubelet's token and the CA (testenv/kube.py)."""
    for prog in ("containerd", "ctr", "runc"):
        if subprocess.run(["sh", "-c", f"command -v {prog}"], capture_output=True).returncode != 0:
            raise ToolMissing(f"{prog} not found: run `make test-env` (as root: it installs Debian's)")
    if not PAUSE_ARCHIVE.exists():
        raise ToolMissing(f"{PAUSE_ARCHIVE} not found: run `make test-env`")
    workdir.mkdir(parents=True, exist_ok=True)
    node = Node(cluster, workdir, node_ip(), workdir / "containerd" / "containerd.sock", lock=_lock())
    node.chains_before = _chains()
    try:
        node.servers.append(_containerd(node))
        node.import_image(PAUSE_ARCHIVE)
        node.servers.append(_kubelet(node))
        _wait(lambda: _ready(cluster), "the node", node.servers[-1].proc, node.servers[-1].log, timeout=timeout)
        node.servers.append(_controller(cluster, workdir, "kube-controller-manager", [
            f"--service-account-private-key-file={cluster.pki['sa_key']}", f"--root-ca-file={cluster.ca}",
            "--use-service-account-credentials=false", "--controllers=*"]))
        node.servers.append(_controller(cluster, workdir, "kube-scheduler", []))
    except Exception:
        node.stop()
        raise
    return node


def _ready(cluster) -> bool:
    conds = cluster.get(f"/api/v1/nodes/{NAME}").get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _containerd(node: Node) -> Server:
    d = node.workdir / "containerd"
    (d / "cni").mkdir(parents=True, exist_ok=True)
    # a CNI config makes the runtime report its network ready; hostNetwork pods never use it
    (d / "cni" / "10-mb.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": "mb", "plugins": [{
            "type": "bridge", "bridge": "mbcni0", "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.234.0.0/24"}]], "dataDir": str(d / "ipam")}}]}))
    (d / "config.toml").write_text(f'''version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
''')
    server = _spawn("containerd", ["containerd", "--config", str(d / "config.toml")], d, 0)

    def answers() -> bool:
        node.ctr("version")
        return True

    _wait(answers, "containerd", server.proc, server.log, timeout=30)
    return server


def _kubelet(node: Node) -> Server:
    d = node.workdir / "kubelet"
    d.mkdir(parents=True, exist_ok=True)
    c = node.cluster
    kubeconfig = d / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": c.url, "certificate-authority": str(c.ca)}}],
        "users": [{"name": "kubelet", "user": {"token": c.node_token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "kubelet"}}],
        "current-context": "e2e"}))
    kubeconfig.chmod(0o600)
    config = d / "config.json"      # JSON is YAML
    config.write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # the API server's kubelet client certificate (logs) is signed by the cluster CA
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(c.ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "podLogsDir": str(d / "pod-logs"),
        "address": node.ip, "port": free_port(), "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
        "resolvConf": "/etc/resolv.conf",
        "makeIPTablesUtilChains": False,
        # a test machine's disk may be fuller than the defaults allow: never evict, never GC images
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
    }))
    cmd = [str(tool("kubelet")), f"--config={config}", f"--kubeconfig={kubeconfig}", f"--root-dir={d / 'root'}",
           f"--cert-dir={d / 'pki'}", f"--hostname-override={NAME}", f"--node-ip={node.ip}", "--v=1"]
    return _spawn("kubelet", cmd, d, 0)


def _controller(cluster, workdir: Path, name: str, extra: list[str]) -> Server:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    conf = str(cluster.kubeconfig)
    port = free_port()
    cmd = [str(tool(name)), f"--kubeconfig={conf}", f"--authentication-kubeconfig={conf}",
           f"--authorization-kubeconfig={conf}", "--leader-elect=false", "--bind-address=127.0.0.1",
           f"--secure-port={port}", f"--cert-dir={d}", "--v=1", *extra]
    return _spawn(name, cmd, d, port)
