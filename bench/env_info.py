"""The machine and the versions of everything measured, for RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

from testenv import servers

from .measure import BIN


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M) \
        if Path("/proc/meminfo").exists() else None
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": model.group(1).strip() if model else platform.processor() or "?",
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


def _server_version(name: str, pattern: str) -> str:
    try:
        path = servers.tool(name)
    except servers.ToolMissing as exc:
        return f"missing: {exc}"
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(pattern, out)
    return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else "?"


def _documentdb() -> str:
    ferret = servers.DOCUMENTDB / "bin" / "ferretdb"
    if not ferret.exists():
        return f"missing: {ferret}"
    out = subprocess.run([str(ferret), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version:\s*(\S+)", out)
    return (f"FerretDB {m.group(1) if m else '?'} on PostgreSQL 15 + DocumentDB (../shared/documentdb/SOURCES.md)")


def versions(mongo_tools: str) -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "mender-backup": _pkg("mender-backup"),
        "pymongo": _pkg("pymongo"),
        "boto3": _pkg("boto3"),
        "botocore": _pkg("botocore"),
        "s3transfer": _pkg("s3transfer"),
        "zstandard": _pkg("zstandard"),
        "awscli": (_pkg("awscli") + f" ({BIN / 'aws'})") if (BIN / "aws").exists() else "not installed",
        "pyinstrument": _pkg("pyinstrument"),
        "minio": _server_version("minio", r"minio version (\S+)") + " (pinned pseudo-version "
                 "v0.0.0-20260212201848-7aac2a2c5b7c, see tests/ENVIRONMENT.md)",
        "documentdb (the main MongoDB)": _documentdb(),
        "ferretdb v1 (second table)": _server_version("ferretdb", r"version:\s*(\S+)") + " (SQLite backend)",
        "mongodump / mongorestore": mongo_tools,
        "zstd (CLI, for mongodump | zstd)": _first_line(["zstd", "--version"]),
        "xz (CLI, for mongodump | xz)": _first_line(["xz", "--version"]),
    }
