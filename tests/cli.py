"""Run the real `mender-backup` console script as a subprocess, as the CronJob does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXE = Path(sys.executable).parent / "mender-backup"


def tool_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The machine's environment without settings of ours it may carry, plus `env`."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MENDER_BACKUP_", "MONGODB_"))}
    return {**full, **(env or {})}


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The tool in the background, for tests that act while it runs."""
    return subprocess.Popen([str(EXE), *args], env=tool_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
        ) -> subprocess.CompletedProcess:
    r = subprocess.run([str(EXE), *args], env=tool_env(env), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"mender-backup {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r


def json_events(r: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def result_of(r: subprocess.CompletedProcess) -> dict:
    results = [e["result"] for e in json_events(r) if e.get("event") == "result"]
    assert len(results) == 1, r.stdout
    return results[0]


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """A failure as the user sees it: the documented exit code, exactly one error line
    (the last thing on stderr, after any progress lines), no traceback."""
    assert r.returncode == code, f"exit {r.returncode}, wanted {code}:\n{r.stderr}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]
