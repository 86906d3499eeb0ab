"""The few Kubernetes API calls helm does not make for us (`helm mender-backup run`
creates a Job), with the standard library only.

The connection is found as helm finds it, so the plugin talks to the cluster the
outer `helm` was pointed at:

- helm's overrides, passed to plugins as env vars: HELM_KUBEAPISERVER,
  HELM_KUBETOKEN, HELM_KUBECAFILE, HELM_KUBEINSECURE_SKIP_TLS_VERIFY,
  HELM_KUBEASUSER (impersonation), HELM_KUBECONTEXT;
- the kubeconfig: $KUBECONFIG (several files are merged as kubectl merges them:
  the first file to name an entry wins) or ~/.kube/config;
- else the pod's service account (in-cluster).

Credentials: bearer token (`token`, `tokenFile`), client certificate (file or
`-data`), and exec credential plugins (client.authentication.k8s.io v1 and
v1beta1: EKS, GKE, AKS/kubelogin). The legacy `auth-provider` entries are refused
in one line. Secrets never reach a command line or an error message.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from ..errors import ConflictError, MenderBackupError, NotFoundError, UnreachableError, UsageError
from ..redact import register_secret, scrub

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _load_kubeconfigs(env: Mapping[str, str]) -> dict:
    """The merged kubeconfig (kubectl's rules: the first file that sets a value or
    names an entry wins); {} when there is none."""
    paths = [p for p in (env.get("KUBECONFIG") or "").split(os.pathsep) if p]
    if not paths:
        default = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
        paths = [str(default)] if default.exists() else []
    merged: dict = {"clusters": {}, "users": {}, "contexts": {}, "current-context": "", "_dirs": {}}
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            continue
        try:
            data = YAML(typ="safe").load(path.read_text()) or {}
        except Exception as exc:
            raise UsageError(f"kubeconfig {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not merged["current-context"]:
            merged["current-context"] = data.get("current-context") or ""
        for kind, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in data.get(kind) or []:
                name = entry.get("name")
                if name is not None and name not in merged[kind]:
                    merged[kind][name] = entry.get(key) or {}
                    merged["_dirs"][(kind, name)] = path.parent  # relative file paths are relative to it
    return merged


@dataclass
class Connection:
    server: str
    namespace: str = "default"
    ca_file: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    token: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Connection:
        env = os.environ if env is None else env
        conf = _load_kubeconfigs(env)
        context_name = env.get("HELM_KUBECONTEXT") or conf["current-context"]
        if context_name and context_name not in conf["contexts"]:
            raise UsageError(f'kubeconfig: context "{context_name}" does not exist')
        if context_name:
            conn = cls._from_kubeconfig(conf, context_name)
        elif env.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
            host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
            host = f"[{host}]" if ":" in host else host
            conn = cls(server=f"https://{host}:{port}", ca_file=str(SA_DIR / "ca.crt"),
                       token=(SA_DIR / "token").read_text().strip(),
                       namespace=(SA_DIR / "namespace").read_text().strip())
        elif env.get("HELM_KUBEAPISERVER"):
            conn = cls(server=env["HELM_KUBEAPISERVER"])
        else:
            raise UnreachableError("no Kubernetes configuration: set KUBECONFIG or pass --kubeconfig")
        # helm's own flags override the kubeconfig, as they do for helm
        if env.get("HELM_KUBEAPISERVER"):
            conn.server = env["HELM_KUBEAPISERVER"]
        if env.get("HELM_KUBETOKEN"):
            conn.token, conn.cert_file, conn.cert_data = env["HELM_KUBETOKEN"], None, None
        if env.get("HELM_KUBECAFILE"):
            conn.ca_file, conn.ca_data = env["HELM_KUBECAFILE"], None
        if _truthy(env.get("HELM_KUBEINSECURE_SKIP_TLS_VERIFY")):
            conn.insecure = True
        if env.get("HELM_KUBETLS_SERVER_NAME"):
            raise UsageError("--kube-tls-server-name is not supported by `helm mender-backup run`")
        if env.get("HELM_KUBEASUSER"):
            conn.headers["Impersonate-User"] = env["HELM_KUBEASUSER"]
        if env.get("HELM_NAMESPACE"):
            conn.namespace = env["HELM_NAMESPACE"]
        register_secret(conn.token)
        return conn

    @classmethod
    def _from_kubeconfig(cls, conf: dict, context_name: str) -> Connection:
        ctx = conf["contexts"][context_name]
        cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
        if cluster_name not in conf["clusters"]:
            raise UsageError(f'kubeconfig: context "{context_name}" names cluster "{cluster_name}", which does not exist')
        cluster = conf["clusters"][cluster_name]
        user = conf["users"].get(user_name) or {}
        cdir = conf["_dirs"].get(("clusters", cluster_name), Path("."))
        udir = conf["_dirs"].get(("users", user_name), Path("."))

        def rel(base: Path, p: str | None) -> str | None:
            return str((base / Path(p).expanduser())) if p else None

        def data(value: str | None) -> bytes | None:
            return base64.b64decode(value) if value else None

        if not cluster.get("server"):
            raise UsageError(f'kubeconfig: cluster "{cluster_name}" has no server')
        if cluster.get("tls-server-name"):
            raise UsageError("kubeconfig tls-server-name is not supported by `helm mender-backup run`")
        if user.get("auth-provider"):
            raise UsageError(f"kubeconfig user {user_name}: auth-provider "
                             f"{user['auth-provider'].get('name', '')!r} is not supported: use an exec credential plugin")
        conn = cls(server=cluster["server"], namespace=ctx.get("namespace") or "default",
                   ca_file=rel(cdir, cluster.get("certificate-authority")),
                   ca_data=data(cluster.get("certificate-authority-data")),
                   insecure=bool(cluster.get("insecure-skip-tls-verify")),
                   cert_file=rel(udir, user.get("client-certificate")),
                   key_file=rel(udir, user.get("client-key")),
                   cert_data=data(user.get("client-certificate-data")),
                   key_data=data(user.get("client-key-data")))
        if user.get("token"):
            conn.token = user["token"]
        elif user.get("tokenFile"):
            conn.token = Path(rel(udir, user["tokenFile"])).read_text().strip()
        elif user.get("exec"):
            conn._exec(user["exec"], cluster)
        if user.get("as"):
            conn.headers["Impersonate-User"] = user["as"]
        return conn

    def _exec(self, spec: Mapping, cluster: Mapping) -> None:
        """Run an exec credential plugin (non-interactive) and take its token or cert."""
        api_version = spec.get("apiVersion") or "client.authentication.k8s.io/v1"
        info = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
        env = dict(os.environ, KUBERNETES_EXEC_INFO=json.dumps(info))
        for e in spec.get("env") or []:
            env[e["name"]] = e.get("value", "")
        argv = [spec["command"], *(spec.get("args") or [])]
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=120)
        except FileNotFoundError:
            hint = spec.get("installHint") or ""
            raise UnreachableError(f"exec credential plugin {spec['command']} not found. {hint}".strip()) from None
        except subprocess.TimeoutExpired:
            raise UnreachableError(f"exec credential plugin {spec['command']} did not answer in 120 s") from None
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise UnreachableError(f"exec credential plugin {spec['command']} failed: {scrub(last)}")
        try:
            status = json.loads(proc.stdout)["status"]
        except (ValueError, KeyError, TypeError):
            raise UnreachableError(f"exec credential plugin {spec['command']} printed no ExecCredential") from None
        if status.get("token"):
            self.token = status["token"]
        elif status.get("clientCertificateData") and status.get("clientKeyData"):
            self.cert_data = status["clientCertificateData"].encode()
            self.key_data = status["clientKeyData"].encode()
            self.cert_file = self.key_file = None
        else:
            raise UnreachableError(f"exec credential plugin {spec['command']} returned no credential")

    def ssl_context(self) -> ssl.SSLContext:
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode())
        else:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_data or self.cert_file:
            self._load_client_cert(ctx)
        return ctx

    def _load_client_cert(self, ctx: ssl.SSLContext) -> None:
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            return
        # ssl wants files: a 0600 file in a 0700 folder, removed at once
        import tempfile
        with tempfile.TemporaryDirectory(prefix="mender-backup-kube-") as d:
            cert, key = Path(d) / "client.crt", Path(d) / "client.key"
            for path, content in ((cert, self.cert_data or Path(self.cert_file or "").read_bytes()),
                                  (key, self.key_data or Path(self.key_file or "").read_bytes())):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content)
            ctx.load_cert_chain(str(cert), str(key))


class Client:
    """JSON over HTTPS to the API server; errors are one line, as errors.py classes."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._ctx = conn.ssl_context() if conn.server.startswith("https") else None
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self._ctx))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Client:
        return cls(Connection.from_env(env))

    @property
    def namespace(self) -> str:
        return self.conn.namespace

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Accept": "application/json", "User-Agent": "mender-backup", **self.conn.headers}
        if self.conn.token:
            headers["Authorization"] = f"Bearer {self.conn.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.conn.server.rstrip("/") + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _api_error(method, path, exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnreachableError(f"Kubernetes API {self.conn.server}: {scrub(str(reason))}") from None

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def create(self, path: str, obj: dict) -> dict:
        return self.request("POST", path, obj)


def _api_error(method: str, path: str, code: int, raw: bytes) -> MenderBackupError:
    try:
        message = json.loads(raw).get("message") or ""
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace").strip().splitlines()[0] if raw.strip() else ""
    msg = f"Kubernetes API {method} {path}: {scrub(message) or f'HTTP {code}'}"
    if code == 404:
        return NotFoundError(msg)
    if code == 409:
        return ConflictError(msg)
    if code in (401, 403):
        return UnreachableError(msg)
    if code in (400, 422):
        return UsageError(msg)
    return MenderBackupError(msg)
