"""The helm-facing side of the plugin: read a release, rewrite its values, build
the helm commands that change it.

Kept apart from the Typer commands (plugin.py) so that every helm call and every
values edit can be tested without a cluster. Nothing here prints secrets: helm's
error output is scrubbed, values files with secrets are written 0600 and removed.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from .cron import check_schedule
from .store import parse_destination
from .errors import ConflictError, MenderBackupError, NotFoundError, UnreachableError, UsageError
from .redact import redact_url, register_url_secrets, scrub

# Where the Mender chart keeps the two things a restore moves (mender-helm's values.yaml).
MONGODB_URL_PATH = ("global", "mongodb", "URL")
BUCKET_PATH = ("global", "s3", "AWS_BUCKET")


# --- helm invocation -------------------------------------------------------------------

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
    def from_env(cls, env: Mapping[str, str] | None = None) -> HelmEnv:
        env = os.environ if env is None else env
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
    errors = [ln for ln in lines if ln.startswith("Error:")]
    detail = scrub((errors or lines or [f"exit status {proc.returncode}"])[-1])
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

    def search_repo(self, chart: str, version: str) -> list[dict]:
        # repo search reads local repo indexes only: no cluster flags needed
        out = self.runner([self.env.bin, "search", "repo", chart, "--version", version, "-o", "json"])
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

    @classmethod
    def from_metadata(cls, meta: Mapping) -> ReleaseInfo:
        try:
            return cls(name=meta["name"], namespace=meta.get("namespace", ""), chart=meta["chart"],
                       version=str(meta["version"]), revision=int(meta["revision"]),
                       status=str(meta.get("status", "")))
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
    """
    return ["upgrade", info.name, chart_ref, "--version", info.version,
            "-f", str(values_file), "--reset-values"]


def upgrade_argv(helm: Helm, info: ReleaseInfo, chart_ref: str, values_file: Path | str) -> list[str]:
    return helm.argv(*upgrade_args(info, chart_ref, values_file), namespace=info.namespace or None)


def rollback_hint(helm: Helm, info: ReleaseInfo) -> str:
    return " ".join(helm.argv("rollback", info.name, str(info.revision), namespace=info.namespace or None))


# --- values files -------------------------------------------------------------------------

@contextlib.contextmanager
def private_file(text: str, prefix: str = "mender-values-") -> Iterator[Path]:
    """A 0600 temp file (values may hold credentials), removed whatever happens."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".yaml")
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16
    return y


def load_values(text: str) -> CommentedMap:
    try:
        data = _yaml().load(text) if text.strip() else None
    except Exception as exc:  # ruamel raises many types; all mean "not YAML"
        raise UsageError(f"values are not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise UsageError("values are not a YAML mapping")
    return data


def get_path(data: Mapping, path: Sequence[str]):
    node = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def check_rewritable(data: Mapping, *, mongodb: bool, bucket: bool) -> None:
    """Refuse when the Mender chart would ignore the key we set: with
    global.mongodb.existingSecret / global.s3.existingSecret it reads the URL
    and bucket from those Secrets, not from values."""
    if mongodb and get_path(data, ("global", "mongodb", "existingSecret")):
        raise ConflictError("the release takes its MongoDB URL from global.mongodb.existingSecret: "
                            "update MONGO_URL in that Secret instead of passing --mongodb-url")
    if bucket and get_path(data, ("global", "s3", "existingSecret")):
        raise ConflictError("the release takes its bucket from global.s3.existingSecret: "
                            "update AWS_BUCKET in that Secret instead of passing --bucket")


def rewrite_values(text: str, changes: Mapping[tuple[str, ...], str]) -> str:
    """Set scalar keys (e.g. global.mongodb.URL) in a values document, changing
    nothing else: every other byte (comments, order, quoting, anchors, blank
    lines, indentation) stays as it was.

    ruamel.yaml's round-trip parser finds each key and its position; the edit
    is then made on those lines of the original text only. A full ruamel dump
    would re-indent sequences and reflow some scalars, which is noise in the diff
    an operator must approve at 3 a.m.
    """
    for path, value in changes.items():
        text = _set_one(text, path, value)
    # the result must say what we meant, or we do not hand it to helm
    data = load_values(text)
    for path, value in changes.items():
        if get_path(data, path) != value:
            raise MenderBackupError(f"values rewrite failed for {'.'.join(path)}")
    return text


def _set_one(text: str, path: Sequence[str], value: str) -> str:
    data = load_values(text)
    lines = text.splitlines(keepends=True)
    node: CommentedMap = data
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        # a key that only arrives through a merge (`<<: *defaults`) is not written
        # here: an own key overrides the merged one, as YAML intends
        if key not in node or key not in getattr(node, "_ok", node):
            return _insert(text, lines, node, depth, path[depth:], value)
        child = node[key]
        if last:
            if get_path(data, path) == value:
                return text
            return _replace_scalar(text, lines, node, key, value)
        if isinstance(child, CommentedMap) and child and not child.fa.flow_style():
            node = child
            continue
        if child is None or (isinstance(child, CommentedMap) and not child):
            # `mongodb:` or `mongodb: {}`: make it a block mapping holding the rest
            return _expand_empty(text, lines, node, key, depth, path[depth + 1:], value)
        raise UsageError(f"cannot set {'.'.join(path)}: {'.'.join(path[:depth + 1])} is not a block mapping")
    return text


def _indent_unit(lines: Sequence[str]) -> int:
    """The file's own indentation step (2 by Mender's and helm's convention)."""
    for ln in lines:
        stripped = ln.lstrip(" ")
        n = len(ln) - len(stripped)
        if n and stripped.strip() and not stripped.startswith(("#", "-")):
            return n
    return 2


def _child_indent(node: CommentedMap, depth: int, lines: Sequence[str]) -> int:
    if node:
        first = next(iter(node))
        return node.lc.key(first)[1]
    return depth * _indent_unit(lines)


def _block(keys: Sequence[str], value: str, indent: int, unit: int) -> str:
    out = []
    for i, key in enumerate(keys):
        pad = " " * (indent + i * unit)
        if i == len(keys) - 1:
            out.append(f"{pad}{key}: {_scalar(value)}\n")
        else:
            out.append(f"{pad}{key}:\n")
    return "".join(out)


def _block_end(lines: Sequence[str], node: CommentedMap, indent: int) -> int:
    """Index of the line after the last line that belongs to mapping `node`
    (whose keys sit at column `indent`); trailing blank lines and comments
    less indented than its keys belong to whatever follows."""
    first_line = node.lc.key(next(iter(node)))[0]
    end = first_line + 1
    i = end
    while i < len(lines):
        s = lines[i]
        body = s.strip()
        lead = len(s) - len(s.lstrip(" "))
        if body and not body.startswith("#") and lead < indent:
            break
        if body and not (body.startswith("#") and lead < indent):
            end = i + 1
        i += 1
    return end


def _insert(text: str, lines: list[str], node: CommentedMap, depth: int,
            keys: Sequence[str], value: str) -> str:
    unit = _indent_unit(lines)
    if not node:  # no keys at all here: only the top level (empty document) gets here
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + _block(keys, value, 0, unit)
    indent = _child_indent(node, depth, lines)
    at = _block_end(lines, node, indent)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, _block(keys, value, indent, unit))
    return "".join(lines)


def _expand_empty(text: str, lines: list[str], parent: CommentedMap, key: str, depth: int,
                  keys: Sequence[str], value: str) -> str:
    line, col = parent.lc.key(key)
    unit = _indent_unit(lines)
    src = lines[line]
    m = re.match(rf"^(\s*{re.escape(key)}\s*:)[ \t]*(\{{\s*\}}|~|null|Null|NULL)?[ \t]*(#.*)?$", src.rstrip("\n"))
    if not m:
        raise UsageError(f"cannot set {key}.{'.'.join(keys)}: unexpected layout on line {line + 1}")
    comment = f" {m.group(3)}" if m.group(3) else ""
    eol = "\n" if src.endswith("\n") else "\n"
    lines[line] = m.group(1) + comment + eol + _block(keys, value, col + unit, unit)
    return "".join(lines)


_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+=?&-][A-Za-z0-9_./:@%+=?&,~!$*()\[\]-]*$")


def _plain_ok(value: str) -> bool:
    """True when `value` reads back as the same string when written unquoted."""
    if not value or not _PLAIN_SAFE.match(value) or ": " in value or " #" in value:
        return False
    y = YAML(typ="safe")
    try:
        return y.load(f"k: {value}\n") == {"k": value}
    except Exception:
        return False


def _scalar(value: str, style: str = "") -> str:
    if style == "'" or (not style and not _plain_ok(value) and "\n" not in value and "'" not in value):
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not _plain_ok(value):
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    return value


def _replace_scalar(text: str, lines: list[str], parent: CommentedMap, key: str, value: str) -> str:
    vline, vcol = _value_pos(lines, parent, key)
    src = lines[vline]
    rest = src[vcol:]
    anchor = ""
    m = re.match(r"(&[^\s]+\s+)", rest)
    if m:  # keep the anchor: aliases of it follow the new value, as the author intended
        anchor, rest = m.group(1), rest[m.end():]
    start = vcol + len(anchor)
    if rest.startswith(("|", ">")):
        raise UsageError(f"cannot set {key}: it is a block scalar on line {vline + 1}; make it a one-line value")
    if rest.startswith(('"', "'")):
        q = rest[0]
        end = _closing_quote(rest, q)
        if end < 0:
            raise UsageError(f"cannot set {key}: quoted value spans several lines (line {vline + 1})")
        token, style = rest[: end + 1], q
    else:
        cm = re.search(r"\s+#", rest)
        token = (rest[: cm.start()] if cm else rest).rstrip("\r\n").rstrip()
        style = ""
        # a plain scalar continued on the next line would be cut: refuse rather than corrupt
        nxt = lines[vline + 1] if vline + 1 < len(lines) else ""
        key_col = parent.lc.key(key)[1]
        if nxt.strip() and not nxt.strip().startswith("#") and (len(nxt) - len(nxt.lstrip(" "))) > key_col \
                and not nxt.lstrip().startswith("- "):
            raise UsageError(f"cannot set {key}: its value spans several lines (line {vline + 1})")
    if token.startswith("*"):
        style = ""  # an alias becomes a value of its own here; the anchor stays where it is
    new = _scalar(value, style)
    lines[vline] = src[:start] + new + src[start + len(token):]
    return "".join(lines)


def _value_pos(lines: Sequence[str], parent: CommentedMap, key: str) -> tuple[int, int]:
    """Where the value of `key` starts in the text. Read from the key's own line:
    for an alias (`AWS_BUCKET: *bucket`) ruamel reports the anchored node's
    position, which is somewhere else in the file."""
    kline, kcol = parent.lc.key(key)
    m = re.compile(rf"([\"']?){re.escape(key)}\1[ \t]*:[ \t]*").match(lines[kline], kcol)
    if m:
        rest = lines[kline][m.end():].strip()
        if rest and not rest.startswith("#"):
            return kline, m.end()
    return parent.lc.value(key)


def _closing_quote(s: str, q: str) -> int:
    i = 1
    while i < len(s):
        c = s[i]
        if q == '"' and c == "\\":
            i += 2
            continue
        if c == q:
            if q == "'" and i + 1 < len(s) and s[i + 1] == "'":
                i += 2
                continue
            return i
        i += 1
    return -1


def values_diff(old: str, new: str, name: str = "values.yaml") -> str:
    """Unified diff with every URL password and registered secret masked."""
    diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                fromfile=f"{name} (deployed)", tofile=f"{name} (after restore)")
    return "".join(scrub(line) for line in diff)


def plan_changes(mongodb_url: str | None, bucket: str | None) -> dict[tuple[str, ...], str]:
    register_url_secrets(mongodb_url)
    changes: dict[tuple[str, ...], str] = {}
    if mongodb_url:
        changes[MONGODB_URL_PATH] = mongodb_url
    if bucket:
        changes[BUCKET_PATH] = bucket
    return changes


def redacted_argv(argv: Sequence[str]) -> str:
    return " ".join(redact_url(scrub(a)) for a in argv)


def dump_yaml(data) -> str:
    buf = io.StringIO()
    _yaml().dump(data, buf)
    return buf.getvalue()


# --- the companion backup release -------------------------------------------------------

COMPANION_SUFFIX = "-backup"
# The Secrets the Mender chart creates when no existingSecret is given
# (mender-helm templates/secrets/secret-mongodb-common.yaml, secret-artifacts-storage.yaml).
MENDER_MONGODB_SECRET = "mongodb-common"
MENDER_MONGODB_SECRET_KEY = "MONGO_URL"
MENDER_S3_SECRET = "artifacts-storage"


def companion_name(release: str) -> str:
    return f"{release}{COMPANION_SUFFIX}"


def companion_values(mender: Mapping, *, destination: str, schedule: str | None = None,
                     compression: str | None = None, image: str | None = None) -> dict:
    """Values for our chart that back up the Mender release `mender` (its user
    values). No credential is copied: the CronJob reads the very Secrets that
    Mender's own pods read, so a credential rotation reaches both."""
    storage = get_path(mender, ("global", "storage")) or "aws"
    if storage != "aws":
        raise UsageError(f"the release stores artifacts in {storage!r}: only S3 (global.storage=aws) is supported")
    parse_destination(destination)
    values: dict = {
        "destination": {"url": destination},
        "mongodb": {
            "existingSecret": get_path(mender, ("global", "mongodb", "existingSecret")) or MENDER_MONGODB_SECRET,
            "existingSecretKey": MENDER_MONGODB_SECRET_KEY,
            "url": "",
        },
        "s3": {"existingSecret": get_path(mender, ("global", "s3", "existingSecret")) or MENDER_S3_SECRET},
    }
    if schedule:
        values["schedule"] = check_schedule(schedule)
    if compression:
        values["compression"] = compression
    if image:
        repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
        values["image"] = {"repository": repo, "tag": tag} if tag else {"repository": image}
    return values


def cronjob_from_manifest(manifest: str) -> dict:
    """The (first) CronJob of a rendered manifest, e.g. `helm get manifest` output."""
    y = YAML(typ="safe")
    cronjobs = [d for d in y.load_all(manifest) if isinstance(d, dict) and d.get("kind") == "CronJob"]
    if not cronjobs:
        raise NotFoundError("no CronJob in the backup release's manifest")
    return cronjobs[0]


def job_from_cronjob_object(cj: Mapping, suffix: str) -> dict:
    """A one-off Job made from a CronJob object as `kubectl create job
    --from=cronjob/NAME` makes it: the job template's labels, annotations and
    spec, and, for a CronJob read from the API (it has a uid), an ownerReference
    to it, so the CronJob's history limits and deletion cover the Job too."""
    tmpl = cj["spec"]["jobTemplate"]
    tmeta = tmpl.get("metadata") or {}
    name = f"{cj['metadata']['name'][:52 - len(suffix)]}-{suffix}"
    meta: dict = {"name": name,
                  "labels": dict(tmeta.get("labels") or {}),
                  "annotations": {**(tmeta.get("annotations") or {}), "cronjob.kubernetes.io/instantiate": "manual"}}
    if cj["metadata"].get("namespace"):
        meta["namespace"] = cj["metadata"]["namespace"]
    if cj["metadata"].get("uid"):
        # not metav1.NewControllerRef: blockOwnerDeletion would need cronjobs/finalizers rights (as kubectl)
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj["metadata"]["name"],
                                    "uid": cj["metadata"]["uid"], "controller": True}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": dict(tmpl["spec"])}


def job_from_cronjob(manifest: str, suffix: str) -> dict:
    """A one-off Job built from the CronJob in a rendered manifest, as
    `kubectl create job --from=cronjob/NAME` would make it."""
    return job_from_cronjob_object(cronjob_from_manifest(manifest), suffix)
