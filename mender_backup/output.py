"""How the tool talks: human lines (with progress) on stderr, or JSON lines on
stdout for the CronJob's logs, or nothing but errors. Every line is scrubbed of
secrets on its way out, whatever produced it.
"""

from __future__ import annotations

import io
import json
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from .redact import scrub


class Reporter:
    def __init__(self, mode: str = "human"):
        assert mode in ("human", "json", "quiet")
        self.mode = mode
        self._tty = sys.stderr.isatty()

    # -- lines
    def _emit_json(self, event: str, **fields: Any) -> None:
        rec = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event, **fields}
        sys.stdout.write(scrub(json.dumps(rec, default=str)) + "\n")
        sys.stdout.flush()

    def info(self, msg: str, **fields: Any) -> None:
        if self.mode == "json":
            self._emit_json("info", msg=msg, **fields)
        elif self.mode == "human":
            sys.stderr.write(scrub(msg) + "\n")

    def warn(self, msg: str, **fields: Any) -> None:
        if self.mode == "json":
            self._emit_json("warning", msg=msg, **fields)
        else:
            sys.stderr.write(scrub(f"warning: {msg}") + "\n")

    def error(self, msg: str, code: int) -> None:
        # One line in every mode: a pod's log is stdout and stderr together, so a JSON
        # copy of the error on stdout made a failed CronJob run log it twice.
        sys.stderr.write(scrub(f"error: {msg}") + "\n")

    def result(self, data: Any, human: str | None = None) -> None:
        """The command's outcome: a JSON document, or human text on stdout."""
        if self.mode == "json":
            self._emit_json("result", result=data)
        elif human is not None:
            sys.stdout.write(scrub(human) + ("" if human.endswith("\n") else "\n"))

    # -- progress
    @contextmanager
    def progress(self, what: str, total: int | None = None, unit: str = "B") -> Iterator["_Progress"]:
        p = _Progress(self, what, total, unit)
        try:
            yield p
        finally:
            p.close()


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Progress:
    """A rich bar on a terminal; otherwise a line every few seconds (logs stay readable)."""

    INTERVAL = 10.0

    def __init__(self, rep: Reporter, what: str, total: int | None, unit: str):
        self.rep, self.what, self.total, self.unit = rep, what, total, unit
        self.done = 0
        self.start = time.monotonic()
        self._last = self.start
        self._bar = None
        if rep.mode == "human" and rep._tty:
            from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress,
                                       TextColumn, TimeElapsedColumn, TransferSpeedColumn)
            cols = [TextColumn("{task.description}"), BarColumn()]
            cols += [DownloadColumn(), TransferSpeedColumn()] if unit == "B" else [MofNCompleteColumn()]
            cols += [TimeElapsedColumn()]
            from rich.console import Console
            self._bar = Progress(*cols, console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(what, total=total)

    def fmt(self, n: float) -> str:
        return human_bytes(n) if self.unit == "B" else f"{int(n)} {self.unit}"

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
            return
        now = time.monotonic()
        if self.rep.mode != "quiet" and now - self._last >= self.INTERVAL:
            self._last = now
            of = f" of {self.fmt(self.total)}" if self.total else ""
            self.rep.info(f"{self.what}: {self.fmt(self.done)}{of}", step=self.what, done=self.done,
                          total=self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _state(row: dict) -> str:
    if row["complete"]:
        g = row.get("guards")
        guards = (f", guards upgrade {g['upgrade']} of {g['release']} (revision {g['revision']}, chart "
                  f"{g['chart_version']} -> {g['upgrade_to']})") if g else ""
        return ("yes (dated in the future)" if row.get("future") else "yes") + guards
    word = "UNKNOWN" if row.get("state") == "unknown" else "NO"
    return f"{word}: {row.get('problem', '')}"


def backups_table(rows: list[dict]) -> str:
    """`list` for people: one line per backup, sizes in binary units."""
    if not rows:
        return "no backups"
    from rich.console import Console
    from rich.table import Table
    t = Table("id", "time", "size", "databases", "documents", "artifacts", "consistent at", "restorable until",
              "key", "test restore", "complete", box=None)
    for r in rows:
        enc = r.get("encryption")
        key = "-" if not enc else enc["key_fingerprint"][:12] + ("" if enc.get("key_available", True) else " (missing)")
        verdict = (r.get("verified") or {}).get("result") or "-"
        consistent = r.get("consistent_at") or ("no" if r.get("consistent") is False else "-")
        t.add_row(r["id"], r["time"] or "?", human_bytes(r["size"]), str(len(r["databases"])),
                  str(r["documents"] if r["documents"] is not None else "-"),
                  str(r["artifacts"] if r["artifacts"] is not None else "-"),
                  consistent, r.get("restorable_until") or "-", key, verdict,
                  _state(r))
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(t)
    return console.export_text().rstrip("\n")
