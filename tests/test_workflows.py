"""The GitHub workflows (.github/workflows/): valid by actionlint (rhysd/actionlint, built by
`make test-env`), and every step that runs a command runs one of the Makefile's own targets,
so CI cannot drift from what the README tells a developer to run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import need_tool

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def run_steps(path: Path) -> list[tuple[str, str]]:
    doc = YAML(typ="safe").load(path.read_text())
    return [(name, step["run"]) for name, job in doc["jobs"].items() for step in job.get("steps", []) if "run" in step]


def test_there_are_workflows():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "release.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(path):
    r = subprocess.run([str(need_tool("actionlint")), "-no-color", str(path)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_command_a_workflow_runs_is_a_make_target(path):
    targets = make_targets()
    steps = run_steps(path)
    assert steps, f"{path.name} runs nothing"
    for job, command in steps:
        words = command.split()
        # `make TARGET`, with make's own VAR=value arguments at most
        assert words[:1] == ["make"] and len(words) >= 2 and words[1] in targets, (job, command)
        assert all(re.fullmatch(r"[A-Z_]+=\S+", w) for w in words[2:]), (job, command)


def test_a_version_tag_runs_make_release_and_pull_requests_run_make_test():
    ci, release = (YAML(typ="safe").load((ROOT / ".github" / "workflows" / n).read_text())
                   for n in ("ci.yml", "release.yml"))
    assert "pull_request" in ci["on"] and [c for _, c in run_steps(WORKFLOWS[0])] == ["make test", "make lint"]
    assert list(release["on"]["push"]) == ["tags"]
    assert [c.split()[1] for _, c in run_steps(WORKFLOWS[1])] == ["release-host", "release-credentials", "release"]


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check above can fail: a workflow that names an unknown event is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_requets\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: make test\n")
    r = subprocess.run([str(need_tool("actionlint")), "-no-color", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "pull_requets" in r.stdout, r.stdout + r.stderr
