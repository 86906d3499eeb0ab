"""The command line itself: help, version, and the human table."""

from __future__ import annotations

import json

import pytest

from mender_backup import __version__
from tests.cli import assert_one_line_error, result_of, run

COMMANDS = ["backup", "restore", "list", "verify", "prune"]


def test_help_lists_the_five_commands_and_exit_codes():
    out = run("--help").stdout
    for c in COMMANDS:
        assert f"  {c} " in out
    assert "Exit codes:" in out and "4 conflict" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    out = run(command, "--help").stdout
    assert out.startswith(f"Usage: mender-backup {command}")
    assert "--help" in out


def test_version():
    assert run("--version").stdout.strip() == __version__


def test_unknown_option_is_a_usage_error():
    r = run("backup", "--no-such-flag", check=False)
    assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr


def test_list_table_marks_incomplete_backups(tmp_path):
    (tmp_path / "backups" / "20261124T010000Z-aaaaaa").mkdir(parents=True)
    (tmp_path / "backups" / "20261124T010000Z-aaaaaa" / "mongodb.archive.zst").write_bytes(b"x")
    e = {"MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}
    out = run("list", env=e).stdout
    assert "20261124T010000Z-aaaaaa" in out and "NO: no manifest" in out and " 1 B " in out
    r = run("list", "--json", env=e)
    assert all(json.loads(line)["event"] for line in r.stdout.splitlines())   # JSON lines, like every command
    rows = result_of(r)
    assert rows == [{"id": "20261124T010000Z-aaaaaa", "time": "2026-11-24T01:00:00+00:00", "state": "incomplete",
                     "size": 1, "archive_size": None, "databases": [], "documents": None, "artifacts": None,
                     "complete": False, "future": False, "encryption": None, "mender_secrets": None,
                     "guards": None, "verified": None, "problem": "no manifest (a failed run, or one still running)",
                     "consistent": None, "consistent_at": None, "restorable_until": None}]


def test_list_human_sizes(tmp_path):
    folder = tmp_path / "backups" / "20261124T010000Z-bbbbbb"
    folder.mkdir(parents=True)
    (folder / "mongodb.archive.zst").write_bytes(b"x" * (3 * 1024 * 1024 + 512 * 1024))
    out = run("list", env={"MENDER_BACKUP_DESTINATION": f"file://{tmp_path}"}).stdout
    assert "3.5 MiB" in out and "3670016" not in out


@pytest.mark.parametrize("command", [["list"], ["verify", "latest"]])
def test_unknown_destination_bucket_is_not_found(minio, command):
    r = run(*command, env={**minio.env(), "MENDER_BACKUP_DESTINATION": "s3://no-such-bucket-x/y"}, check=False)
    assert_one_line_error(r, 3, "does not exist")
