"""Running helm: `$HELM_BIN` with the global flags helm gave the plugin, its
errors as one scrubbed line, and what a release is (`helm get metadata`).

Every helm call of the plugin goes through `Helm`; nothing here edits values.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConflictError, MenderBackupError, NotFoundError, UnreachableError, UsageError
from ..redact import redact_url, scrub


@dataclass(frozen=True)
class HelmEnv:
    """What helm tells a plugin about itself and its global flags.

    Helm strips its global flags (-n, --kube-context, --kubeconfig, --debug) from
    the plugin's arguments and passes them as env vars; every `$HELM_BIN` call we
    make gets them back as flags, so it talks to the same cluster and namespace.
    """

    bin: str = "helm"
    namespace: str | None = None
    kube_context: str | None = None
    kubeconfig: str | None = None
    debug: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HelmEnv:
        return cls(
            bin=env.get("HELM_BIN") or "helm",
            namespace=env.get("HELM_NAMESPACE") or None,
            kube_context=env.get("HELM_KUBECONTEXT") or None,
            kubeconfig=env.get("KUBECONFIG") or None,
            debug=(env.get("HELM_DEBUG") or "").lower() in ("1", "true"),
        )

    def flags(self, namespace: str | None = None) -> list[str]:
        out: list[str] = []
        ns = namespace or self.namespace
        if ns:
            out += ["--namespace", ns]
        if self.kube_context:
            out += ["--kube-context", self.kube_context]
        if self.kubeconfig:
            out += ["--kubeconfig", self.kubeconfig]
        if self.debug:
            out.append("--debug")
        return out


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def _helm_error(argv: Sequence[str], proc: subprocess.CompletedProcess) -> MenderBackupError:
    """One scrubbed line from helm's stderr, as the error class it means."""
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if ln.startswith("Error:")]
    if errors:
        # helm lists several causes as "N errors occurred:" and then "* cause" lines: keep them
        causes = [ln for ln in lines[errors[-1] + 1:] if ln.startswith("*")]
        last = " ".join([lines[errors[-1]], *causes])
    else:
        last = (lines or [f"exit status {proc.returncode}"])[-1]
    detail = scrub(last)
    detail = detail.removeprefix("Error:").strip()
    what = " ".join(argv[1:3])
    msg = f"helm {what}: {detail}"
    low = detail.lower()
    if "not found" in low:
        return NotFoundError(msg)
    if any(s in low for s in ("cluster unreachable", "connection refused", "no such host",
                              "i/o timeout", "unauthorized", "forbidden", "no configuration has been provided")):
        return UnreachableError(msg)
    return MenderBackupError(msg)


class Helm:
    """`$HELM_BIN` with the plugin's global flags; returns stdout, raises one-line errors."""

    def __init__(self, env: HelmEnv | None = None, runner: Runner = _run):
        self.env = env or HelmEnv.from_env()
        self.runner = runner

    def argv(self, *args: str, namespace: str | None = None) -> list[str]:
        return [self.env.bin, *args, *self.env.flags(namespace)]

    def run(self, *args: str, namespace: str | None = None) -> str:
        argv = self.argv(*args, namespace=namespace)
        try:
            proc = self.runner(argv)
        except FileNotFoundError:
            raise NotFoundError(f"helm not found: {self.env.bin} (set HELM_BIN)") from None
        if proc.returncode != 0:
            raise _helm_error(argv, proc)
        return proc.stdout

    def get_values(self, release: str, namespace: str | None = None) -> str:
        """The release's USER values (not --all): what the operator set, nothing more."""
        return self.run("get", "values", release, "-o", "yaml", namespace=namespace)

    def get_all_values(self, release: str, namespace: str | None = None) -> dict:
        return json.loads(self.run("get", "values", release, "--all", "-o", "json", namespace=namespace) or "{}") or {}

    def get_metadata(self, release: str, namespace: str | None = None) -> dict:
        return json.loads(self.run("get", "metadata", release, "-o", "json", namespace=namespace))

    def get_manifest(self, release: str, namespace: str | None = None) -> str:
        return self.run("get", "manifest", release, namespace=namespace)

    def pull(self, ref: str, version: str | None, dest: str) -> None:
        """`helm pull` the chart archive into `dest` (repo, oci:// or URL: no cluster flags)."""
        argv = [self.env.bin, "pull", ref, "-d", dest] + (["--version", version] if version else [])
        proc = self.runner(argv)
        if proc.returncode != 0:
            raise _helm_error(argv, proc)

    def search_repo(self, chart: str, version: str) -> list[dict]:
        # repo search reads local repo indexes only: no cluster flags needed
        out = self.runner([self.env.bin, "search", "repo", chart, "--version", version, "-o", "json"])
        if out.returncode != 0 and "no repositories configured" in (out.stderr or ""):
            return []
        if out.returncode != 0:
            raise _helm_error([self.env.bin, "search", "repo"], out)
        return json.loads(out.stdout or "[]") or []


# --- the release ------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseInfo:
    name: str
    namespace: str
    chart: str
    version: str
    revision: int
    status: str
    app_version: str = ""
    apply_method: str = ""      # Helm 4: "ssa" (server-side apply) or "csa"; Helm 3: empty

    @classmethod
    def from_metadata(cls, meta: Mapping) -> ReleaseInfo:
        try:
            return cls(name=meta["name"], namespace=meta.get("namespace", ""), chart=meta["chart"],
                       version=str(meta["version"]), revision=int(meta["revision"]),
                       status=str(meta.get("status", "")), app_version=str(meta.get("appVersion") or ""),
                       apply_method=str(meta.get("applyMethod") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise MenderBackupError(f"unexpected `helm get metadata` output: missing {exc}") from None

    def require_deployed(self) -> None:
        if self.status != "deployed":
            raise ConflictError(
                f"release {self.name} is {self.status or 'in an unknown state'}, not deployed: "
                f"settle it first (helm history {self.name} -n {self.namespace})")


def resolve_chart(helm: Helm, info: ReleaseInfo, chart: str | None) -> str:
    """The chart reference to upgrade with: --chart, else the one local repo that
    has this chart at the deployed version (never a different version)."""
    if chart:
        return chart
    hits = [h for h in helm.search_repo(info.chart, info.version)
            if str(h.get("name", "")).split("/")[-1] == info.chart and str(h.get("version")) == info.version]
    names = sorted({h["name"] for h in hits})
    if not names:
        raise NotFoundError(
            f"chart {info.chart} {info.version} is not in any local helm repo: "
            f"`helm repo add`/`helm repo update`, or pass --chart")
    if len(names) > 1:
        raise UsageError(f"chart {info.chart} {info.version} is in several repos ({', '.join(names)}): pass --chart")
    return names[0]


def upgrade_args(info: ReleaseInfo, chart_ref: str, values_file: Path | str) -> list[str]:
    """The upgrade that points Mender at the restored stores.

    Same chart version as deployed, the full user values from a file and
    --reset-values: the release ends up with exactly the values we showed in the
    diff. (--reuse-values would merge in stale values from older revisions.)
    A release Helm 4 applies server-side gets --force-conflicts: the restore scaled its
    workloads (spec.replicas now has another field manager), helm takes the field back
    and the restore then sets the replicas that were recorded.
    """
    args = ["upgrade", info.name, chart_ref, "--version", info.version, "-f", str(values_file), "--reset-values"]
    if info.apply_method == "ssa":
        args.append("--force-conflicts")
    return args


def upgrade_argv(helm: Helm, info: ReleaseInfo, chart_ref: str, values_file: Path | str) -> list[str]:
    return helm.argv(*upgrade_args(info, chart_ref, values_file), namespace=info.namespace or None)


def rollback_hint(helm: Helm, info: ReleaseInfo) -> str:
    return " ".join(helm.argv("rollback", info.name, str(info.revision), namespace=info.namespace or None))



def go_duration(text: str | None, default: float = 300.0) -> float:
    """Seconds of a Go duration as helm's --timeout takes it ("5m0s", "90s", "1h"); helm's 5m
    when unset. Anything else is refused in one line."""
    if not text:
        return default
    import re
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text.strip())
    if not m or not any(m.groups()):
        raise UsageError(f"--timeout {text!r}: not a duration like 5m0s, 90s or 1h")
    h, mi, sec = (float(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + sec


def redacted_argv(argv: Sequence[str]) -> str:
    return " ".join(redact_url(scrub(a)) for a in argv)
