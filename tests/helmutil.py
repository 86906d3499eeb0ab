"""Small helpers shared by the chart, release and plugin tests."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "chart"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def helm_run(helm: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def render(helm: Path, *args: str, chart: Path = CHART, release: str = "mender-backup") -> list[dict]:
    out = helm_run(helm, "template", release, str(chart), "--namespace", "mender", *args).stdout
    return [d for d in YAML(typ="safe").load_all(out) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def copy_checkout(dest: Path) -> Path:
    """The repository's files as a clone has them (tracked + new, not ignored),
    so the plugin's install hook builds its venv outside the working tree."""
    import shutil
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel_path in files:
        src = ROOT / rel_path
        if src.is_file():
            (dest / rel_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel_path)
    return dest


def install_plugin(helm: Path, base: Path) -> dict:
    """A real `helm plugin install <checkout>` into private helm homes under `base`
    (the hook builds the plugin's venv: ~15 s). Returns helm, the env to run helm
    with (do not change it: copy it), the checkout, the plugin dir, the install's output."""
    return install_plugin_dir(helm, copy_checkout(base / "mender-backup"), base)


def install_plugin_dir(helm: Path, src: Path, base: Path) -> dict:
    """`helm plugin install SRC` into private helm homes under `base`."""
    import os
    data = base / "data"
    # Helm 4.3's local-directory installer places the plugin under
    # $HELM_DATA_HOME/plugins and ignores $HELM_PLUGINS: set both to the same place.
    env = dict(os.environ, HELM_DATA_HOME=str(data), HELM_PLUGINS=str(data / "plugins"),
               HELM_CONFIG_HOME=str(base / "config"), HELM_CACHE_HOME=str(base / "cache"))
    (data / "plugins").mkdir(parents=True)
    proc = helm_run(helm, "plugin", "install", str(src), env=env)
    return {"helm": helm, "env": env, "src": src, "dir": data / "plugins" / src.name, "install": proc}


@dataclass
class Helm:
    """A helm (with the plugin installed) pointed at a test cluster's API server."""

    name: str
    bin: Path
    env: dict
    cluster: object

    def __call__(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.bin), *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def values(self, release: str, ns: str, revision: int | None = None, all_values: bool = False) -> dict:
        args = ["get", "values", release, "-n", ns, "-o", "json"]
        if revision:
            args += ["--revision", str(revision)]
        if all_values:
            args.append("--all")
        return json.loads(self(*args).stdout or "{}") or {}

    def status(self, release: str, ns: str) -> dict:
        return json.loads(self("status", release, "-n", ns, "-o", "json").stdout)

    def new_namespace(self) -> str:
        name = f"{self.name}-{uuid.uuid4().hex[:8]}"
        self.cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": name}})
        return name
