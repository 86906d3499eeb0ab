"""Small helpers shared by the chart, release and plugin tests."""

from __future__ import annotations

import base64
import subprocess
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
