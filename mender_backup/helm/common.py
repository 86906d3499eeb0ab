"""What every `helm mender-backup` command shares: the environment helm started it with (read
once, into Settings), the session (helm with its global flags, the Kubernetes API), and how
it talks to the operator (messages scrubbed of secrets; questions only on a terminal)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import typer

from ..engine.release import operations as ops
from ..engine.settings import Settings
from ..errors import NotFoundError, UsageError
from ..redact import scrub


@functools.cache
def settings() -> Settings:
    """The environment, read once (helm passes its global flags in it)."""
    return Settings.from_env(os.environ)


def session() -> ops.Session:
    return ops.open_session(settings())


def chart_dir() -> Path:
    plugin_dir = settings().environ.get("HELM_PLUGIN_DIR")
    for base in ([Path(plugin_dir)] if plugin_dir else []) + [Path(__file__).resolve().parents[2]]:
        if (base / "chart" / "Chart.yaml").exists():
            return base / "chart"
    raise NotFoundError("the mender-backup chart was not found: pass --chart-dir")


def say(text: str) -> None:
    for line in text.splitlines() or [""]:
        typer.echo(scrub(line), err=True)


def echo(text: str) -> None:
    typer.echo(scrub(text))


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("refusing to change anything without --yes: stdin is not a terminal")
    if not typer.confirm(question, default=False, err=True):
        raise UsageError("cancelled")
