"""What users install: one version everywhere, the runtime dependencies locked with hashes,
and a clean install (no warnings from our own metadata)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from ruamel.yaml import YAML

from mender_backup import __version__
from tests.helmutil import ROOT


def test_one_version_everywhere():
    """mender_backup/__init__.py is the one source; scripts/set-version.sh writes the copies helm reads."""
    y = YAML(typ="safe")
    chart = y.load((ROOT / "chart" / "Chart.yaml").read_text())
    assert chart["version"] == __version__ and chart["appVersion"] == __version__
    assert y.load((ROOT / "plugin.yaml").read_text())["version"] == __version__
    assert y.load((ROOT / "plugin-helm4.yaml").read_text())["version"] == __version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    # testenv (never shipped) may name others' versions that look like ours (Mender's API 0.1.0);
    # the changelog and the upgrade notes name versions as history; go.sum, modules' versions
    tracked = subprocess.run(["git", "grep", "--untracked", "-l", "-F", __version__, "--", ".", ":!bench", ":!tests",
                              ":!testenv", ":!requirements", ":!CHANGELOG.md", ":!docs/UPGRADING.md",
                              ":!scripts/image-sign/go.sum"],
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert sorted(tracked) == ["chart/Chart.yaml", "mender_backup/__init__.py", "plugin-helm4.yaml", "plugin.yaml"]


def test_the_changelog_and_the_upgrade_notes_begin_with_this_version():
    """Keep a Changelog: the newest section is the version being made ([Unreleased] until its
    release) or this one; the upgrade notes name this version."""
    import re
    heads = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert heads and heads[0] in ("Unreleased", __version__), heads
    notes = re.findall(r"^### (\S+)", (ROOT / "docs" / "UPGRADING.md").read_text(), re.M)
    assert notes and notes[0] == __version__, notes


def test_set_version_writes_every_copy(tmp_path):
    import shutil
    for f in ("mender_backup/__init__.py", "plugin.yaml", "plugin-helm4.yaml", "chart/Chart.yaml",
              "scripts/set-version.sh"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, tmp_path / f)
    proc = subprocess.run([str(tmp_path / "scripts" / "set-version.sh"), "9.8.7"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '__version__ = "9.8.7"' in (tmp_path / "mender_backup/__init__.py").read_text()
    for f in ("plugin.yaml", "plugin-helm4.yaml"):
        assert YAML(typ="safe").load((tmp_path / f).read_text())["version"] == "9.8.7"
    chart = YAML(typ="safe").load((tmp_path / "chart/Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == ("9.8.7", "9.8.7")
    bad = subprocess.run([str(tmp_path / "scripts" / "set-version.sh"), "latest"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a semantic version" in bad.stderr


def _lock() -> dict[str, str]:
    """name -> the requirement block of requirements/runtime.txt"""
    text = (ROOT / "requirements" / "runtime.txt").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2] if text.startswith("#") else text)
    out = {}
    for b in blocks:
        m = re.match(r"([A-Za-z0-9_.-]+)==", b)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = b
    return out


def test_runtime_lock_pins_every_dependency_with_hashes():
    lock = _lock()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for d in deps:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", d).group(0)).lower()
        assert name in lock, f"{name} is not in requirements/runtime.txt: run make lock"
    for name, block in lock.items():
        assert re.search(r"==[^\s;\\]+", block) and "--hash=sha256:" in block, f"{name} is not pinned with hashes"


def test_boto3_floor_is_where_request_checksum_calculation_exists():
    """stores/settings.py passes request_checksum_calculation, which botocore has since 1.36."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "boto3>=1.36" in deps
    locked = re.search(r"botocore==([0-9.]+)", _lock()["botocore"]).group(1)
    assert tuple(map(int, locked.split(".")[:2])) >= (1, 36)


def test_building_the_wheel_prints_no_setuptools_warning(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(tmp_path),
                           str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Warning" not in out and "deprecated" not in out.lower(), out
