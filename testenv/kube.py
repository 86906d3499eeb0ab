"""A real Kubernetes API for the end-to-end tests: etcd + kube-apiserver (built by
`make test-env`) on free 127.0.0.1 ports, in a folder the caller owns.

By default no kubelet, scheduler or controller-manager runs: objects are stored
and validated by the real API server (helm install/upgrade/rollback work), but no
pod ever starts. `start_cluster(..., node=True)` adds a node that runs pods and
the controllers that make Jobs of CronJobs and pods of Jobs (testenv/node.py).

Authentication is a static token (an admin user in group system:masters);
authorization is RBAC. Admission plugins that need a controller to be useful
(ServiceAccount: its token controller) are disabled. Certificates are generated
with `cryptography`. Used by the pytest fixture in tests/conftest.py; no pytest
dependency here.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from testenv.servers import Server, _spawn, _wait, free_port, tool

ADMIN_USER = "e2e-admin"


# --- certificates ---------------------------------------------------------------------

def _write_key(key, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a serving certificate for 127.0.0.1/localhost signed by it, and the
    service-account signing key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mender-backup-e2e-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(later)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))

    # a client certificate of an admin (group system:masters), for the client-certificate tests
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "e2e-cert-admin"),
                                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]))
              .issuer_name(ca_name).public_key(client_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(later)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))

    # the API server's client certificate towards the kubelet (pod logs)
    kubelet_client_key = ec.generate_private_key(ec.SECP256R1())
    kubelet_client = (x509.CertificateBuilder()
                      .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
                                               x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]))
                      .issuer_name(ca_name).public_key(kubelet_client_key.public_key())
                      .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(later)
                      .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                      .sign(ca_key, hashes.SHA256()))

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    paths = {"ca": d / "ca.crt", "cert": d / "apiserver.crt", "key": d / "apiserver.key",
             "sa_key": d / "sa.key", "sa_pub": d / "sa.pub",
             "client_cert": d / "client.crt", "client_key": d / "client.key",
             "kubelet_client_cert": d / "kubelet-client.crt", "kubelet_client_key": d / "kubelet-client.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, paths["key"])
    _write_key(sa_key, paths["sa_key"])
    paths["client_cert"].write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(client_key, paths["client_key"])
    paths["kubelet_client_cert"].write_bytes(kubelet_client.public_bytes(serialization.Encoding.PEM))
    _write_key(kubelet_client_key, paths["kubelet_client_key"])
    paths["sa_pub"].write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return paths


# --- the cluster ----------------------------------------------------------------------------

class ApiError(RuntimeError):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass
class Cluster:
    etcd: Server
    apiserver: Server
    url: str
    token: str
    ca: Path
    kubeconfig: Path
    workdir: Path
    pki: dict = field(default_factory=dict)
    node_token: str = ""
    node: object = None          # testenv.node.Node when started with node=True

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call as the admin user, independent of the plugin's own client."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def text(self, path: str) -> str:
        """A GET whose answer is text, e.g. a pod's log (.../pods/NAME/log)."""
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as r:
                return r.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None

    def ready(self) -> bool:
        req = urllib.request.Request(self.url + "/readyz", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, context=self._ssl(), timeout=5) as r:
            return r.status == 200 and r.read().strip() == b"ok"

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        self.apiserver.stop()
        self.etcd.stop()


def start_etcd(workdir: Path) -> Server:
    client, peer = free_port(), free_port()
    cmd = [str(tool("etcd")), "--name", "e2e", "--data-dir", str(workdir / "data"),
           "--listen-client-urls", f"http://127.0.0.1:{client}",
           "--advertise-client-urls", f"http://127.0.0.1:{client}",
           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-cluster", f"e2e=http://127.0.0.1:{peer}",
           "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
           "--unsafe-no-fsync", "--log-level", "warn"]
    server = _spawn("etcd", cmd, workdir, client)

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2) as r:
            return json.loads(r.read()).get("health") == "true"

    _wait(healthy, "etcd", server.proc, server.log)
    return server


def start_cluster(workdir: Path, timeout: float = 120.0, node: bool = False) -> Cluster:
    """The API (etcd + kube-apiserver); with `node`, also a node that runs pods and
    the controller-manager and scheduler (about 15 s more; testenv/node.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = make_pki(workdir / "pki")
    etcd = start_etcd(workdir / "etcd")
    token, node_token = secrets.token_hex(24), secrets.token_hex(24)
    tokens = workdir / "tokens.csv"
    # the kubelet is user system:node:NAME in group system:nodes: the Node authorizer
    # lets it read only the Secrets of the pods bound to it, as in a real cluster
    from testenv.node import NAME
    tokens.write_text(f'{token},{ADMIN_USER},e2e-admin-uid,"system:masters"\n'
                      f'{node_token},system:node:{NAME},e2e-node-uid,"system:nodes"\n')
    tokens.chmod(0o600)
    port = free_port()
    cmd = [str(tool("kube-apiserver")),
           f"--etcd-servers=http://127.0.0.1:{etcd.port}",
           f"--secure-port={port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
           # the `kubernetes` Service's endpoints may not be a loopback address: do not write them
           "--endpoint-reconciler-type=none",
           f"--cert-dir={workdir / 'certs'}",
           f"--tls-cert-file={pki['cert']}", f"--tls-private-key-file={pki['key']}",
           f"--client-ca-file={pki['ca']}",
           f"--token-auth-file={tokens}",
           "--authorization-mode=Node,RBAC",
           f"--kubelet-client-certificate={pki['kubelet_client_cert']}",
           f"--kubelet-client-key={pki['kubelet_client_key']}",
           "--kubelet-preferred-address-types=InternalIP,Hostname",
           "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
           f"--service-account-key-file={pki['sa_pub']}",
           f"--service-account-signing-key-file={pki['sa_key']}",
           "--service-cluster-ip-range=10.96.0.0/16",
           # ServiceAccount admission waits for a token controller that does not run here
           "--disable-admission-plugins=ServiceAccount",
           "--profiling=false", "--enable-priority-and-fairness=false",
           "--v=1"]
    api = _spawn("kube-apiserver", cmd, workdir, port)
    url = f"https://127.0.0.1:{port}"
    kubeconfig = workdir / "kubeconfig"
    cluster = Cluster(etcd, api, url, token, pki["ca"], kubeconfig, workdir, pki, node_token)
    try:
        _wait(cluster.ready, "kube-apiserver", api.proc, api.log, timeout=timeout)
        write_kubeconfig(cluster)
        if node:
            from testenv.node import start_node
            cluster.node = start_node(cluster, workdir / "node", timeout=timeout)
    except Exception:
        cluster.stop()
        raise
    return cluster


def write_kubeconfig(cluster: Cluster) -> None:
    """A kubeconfig file (JSON is valid YAML) with the CA and the admin token."""
    import base64
    conf = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "e2e", "cluster": {
            "server": cluster.url,
            "certificate-authority-data": base64.b64encode(cluster.ca.read_bytes()).decode()}}],
        "users": [{"name": ADMIN_USER, "user": {"token": cluster.token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": ADMIN_USER}}],
        "current-context": "e2e",
    }
    cluster.kubeconfig.write_text(json.dumps(conf, indent=2))
    cluster.kubeconfig.chmod(0o600)


def wait_for(check, what: str, timeout: float = 30.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)
