"""Connect to the Kubernetes API the way the outer `helm` did, with the official
client (kubeconfig merging, exec credential plugins, client certificates, proxies).

Order, as helm: helm's own overrides (passed to plugins as HELM_KUBEAPISERVER,
HELM_KUBETOKEN, HELM_KUBECAFILE, HELM_KUBEINSECURE_SKIP_TLS_VERIFY,
HELM_KUBETLS_SERVER_NAME, HELM_KUBEASUSER / HELM_KUBEASGROUPS, HELM_KUBECONTEXT,
HELM_NAMESPACE) over the kubeconfig ($KUBECONFIG, several files merged, first wins;
else ~/.kube/config), else the pod's service account (in-cluster). Every failure is
one line of our errors; credentials never reach a message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConflictError, MenderBackupError, NotFoundError, UnreachableError, UsageError
from ..redact import register_secret, scrub

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


@dataclass
class Kube:
    """An API client and the namespace helm would use."""
    api: object          # kubernetes.client.ApiClient
    namespace: str
    server: str

    @property
    def core(self):
        from kubernetes import client
        return client.CoreV1Api(self.api)

    @property
    def apps(self):
        from kubernetes import client
        return client.AppsV1Api(self.api)

    @property
    def batch(self):
        from kubernetes import client
        return client.BatchV1Api(self.api)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Kube":
        """The cluster `env` names (KUBECONFIG, helm's HELM_KUBE*: Settings.environ)."""
        return connect(env)

    def call(self, what: str):
        """`with kube.call("reading Secret x"):` one-line errors naming the server."""
        return api_call(what, self.server)


class _Captured(logging.Handler):
    """The official client logs (and swallows) exec-plugin failures: catch them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _client_errors(what: str) -> Iterator[_Captured]:
    from kubernetes.config.config_exception import ConfigException
    captured = _Captured()
    root = logging.getLogger()
    root.addHandler(captured)
    try:
        yield captured
    except ConfigException as exc:
        raise UsageError(f"{what}: {scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}") from None
    finally:
        root.removeHandler(captured)
    if captured.messages:
        raise UnreachableError(f"{what}: {scrub(captured.messages[-1].splitlines()[0])}")


def _kubeconfig_paths(env: Mapping[str, str]) -> list[str]:
    paths = [p for p in (env.get("KUBECONFIG") or "").split(os.pathsep) if p]
    if not paths:
        default = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
        paths = [str(default)] if default.exists() else []
    return [p for p in paths if Path(p).expanduser().exists()]


def _merged(paths: list[str]) -> dict:
    """kubectl's merge of several kubeconfig files: the first file to set
    current-context, or to name a context or user, wins."""
    from ruamel.yaml import YAML
    merged: dict = {"current-context": "", "contexts": {}, "users": {}}
    for p in paths:
        try:
            data = YAML(typ="safe").load(Path(p).expanduser().read_text()) or {}
        except Exception as exc:
            raise UsageError(f"kubeconfig {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
        merged["current-context"] = merged["current-context"] or data.get("current-context") or ""
        for kind, key in (("contexts", "context"), ("users", "user")):
            for entry in data.get(kind) or []:
                if entry.get("name") is not None and entry["name"] not in merged[kind]:
                    merged[kind][entry["name"]] = (entry.get(key) or {}, Path(p).expanduser().parent)
    return merged


def _check_user(merged: dict, context: str) -> None:
    """What the official client would only log, or fail on obscurely: refuse in one line."""
    user_name = merged["contexts"][context][0].get("user")
    user, base = merged["users"].get(user_name, ({}, Path(".")))
    if user.get("auth-provider"):
        raise UsageError(f"kubeconfig user {user_name}: auth-provider {user['auth-provider'].get('name', '')!r} "
                         f"is not supported: use an exec credential plugin")
    spec = user.get("exec")
    if spec:
        cmd = spec.get("command", "")
        path = cmd if os.path.isabs(cmd) or "/" not in cmd else str(base / cmd)
        if not (shutil.which(cmd) or (os.path.isfile(path) and os.access(path, os.X_OK))):
            raise UnreachableError(f"exec credential plugin {cmd} not found. {spec.get('installHint') or ''}".strip())


def connect(env: Mapping[str, str]) -> Kube:
    from kubernetes import client, config

    cfg = client.Configuration()
    paths = _kubeconfig_paths(env)
    context = env.get("HELM_KUBECONTEXT") or None
    namespace = "default"
    if paths:
        merged = _merged(paths)
        context = context or merged["current-context"]
        if context not in merged["contexts"]:
            raise UsageError(f'kubeconfig: context "{context}" does not exist' if context
                             else "kubeconfig: no current-context: pass --kube-context")
        _check_user(merged, context)
        with _client_errors("kubeconfig"):
            config.load_kube_config(config_file=os.pathsep.join(paths), context=context,
                                    client_configuration=cfg, persist_config=False)
        namespace = merged["contexts"][context][0].get("namespace") or "default"
    elif env.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
        with _client_errors("in-cluster configuration"):
            config.load_incluster_config(client_configuration=cfg)
        namespace = (SA_DIR / "namespace").read_text().strip()
    elif not env.get("HELM_KUBEAPISERVER"):
        raise UnreachableError("no Kubernetes configuration: set KUBECONFIG or pass --kubeconfig")

    # helm's own flags override the kubeconfig, as they do for helm
    overrides: dict = {}
    if env.get("HELM_KUBEAPISERVER"):
        overrides["host"] = env["HELM_KUBEAPISERVER"]
    if env.get("HELM_KUBETOKEN"):
        overrides.update(cert_file=None, key_file=None)
    if env.get("HELM_KUBECAFILE"):
        overrides["ssl_ca_cert"] = env["HELM_KUBECAFILE"]
    if _truthy(env.get("HELM_KUBEINSECURE_SKIP_TLS_VERIFY")):
        overrides["verify_ssl"] = False
    if env.get("HELM_KUBETLS_SERVER_NAME"):
        overrides["tls_server_name"] = env["HELM_KUBETLS_SERVER_NAME"]
    if env.get("HELM_NAMESPACE"):
        namespace = env["HELM_NAMESPACE"]
    _apply(cfg, overrides, env.get("HELM_KUBETOKEN"))
    # urllib3's retry warnings would be lines of their own on stderr: our errors are one line
    logging.getLogger("urllib3").setLevel(logging.ERROR)

    api = client.ApiClient(cfg)
    if env.get("HELM_KUBEASUSER"):
        api.set_default_header("Impersonate-User", env["HELM_KUBEASUSER"])
    groups = [g for g in (env.get("HELM_KUBEASGROUPS") or "").split(",") if g]
    if len(groups) > 1:     # one header per group is what the API wants; urllib3 sends one
        raise UsageError("--kube-as-group: impersonating more than one group is not supported")
    if groups:
        api.set_default_header("Impersonate-Group", groups[0])
    return Kube(api, namespace, cfg.host)


def _apply(cfg, overrides: dict, token: str | None) -> None:
    """helm's flags on top of the kubeconfig. The official client copies the kubeconfig's
    settings onto the configuration again before every request (its refresh hook, which
    also re-reads tokens); ours runs after it, so helm's flags keep winning, and a
    tokenFile's trailing newline (kubectl strips it) never reaches the header."""
    loaders = cfg.refresh_api_key_hook

    def apply(c) -> None:
        if loaders is not None:
            loaders(c)
        for key, value in overrides.items():
            setattr(c, key, value)
        if token:
            c.api_key = {"BearerToken": f"Bearer {token}"}
        c.api_key = {k: v.strip() for k, v in (c.api_key or {}).items()}
        for v in c.api_key.values():
            register_secret(v.removeprefix("Bearer "))

    apply(cfg)
    cfg.refresh_api_key_hook = apply


def api_error(exc: BaseException, what: str, server: str = "") -> MenderBackupError:
    """An exception of the client as one of ours: one line, the exit code it means."""
    from kubernetes.client.exceptions import ApiException
    if isinstance(exc, ApiException):
        import json
        try:
            message = json.loads(exc.body or "{}").get("message") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        msg = f"Kubernetes API {what}: {scrub(str(message)) or f'HTTP {exc.status}'}"
        if exc.status == 404:
            return NotFoundError(msg)
        if exc.status == 409:
            return ConflictError(msg)
        if exc.status in (401, 403):
            return UnreachableError(msg)
        if exc.status in (400, 422):
            return UsageError(msg)
        return MenderBackupError(msg)
    if type(exc).__module__.startswith("urllib3") or isinstance(exc, OSError):
        at = f" {server}" if server else ""
        return UnreachableError(f"Kubernetes API{at} {what}: cannot connect ({type(exc).__name__})")
    return MenderBackupError(f"Kubernetes API {what}: {scrub(str(exc))}")


@contextlib.contextmanager
def api_call(what: str, server: str = "") -> Iterator[None]:
    """`with api_call("get secret x"):` turns the client's exceptions into ours."""
    try:
        yield
    except MenderBackupError:
        raise
    except Exception as exc:
        raise api_error(exc, what, server) from None
