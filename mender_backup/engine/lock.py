"""One backup or prune at a destination at a time: a lease, like restic's locks.

The lock is an object (locks/mender-backup.lock) created with a conditional
write (O_EXCL / S3 If-None-Match), so two runs cannot both win. It names its
holder (host, PID, start time) and the holder refreshes it every
REFRESH_SECONDS. It is stale, and the next run takes it over with a warning,
when it has not been refreshed for `stale_after` seconds (default 10 minutes),
or at once when its holder is a process on this host, in this PID namespace, that no
longer exists (pods share a host name under hostNetwork, and each has its own PIDs).
A live lock is only removed by --break-lock.

A holder that cannot refresh (the store unreachable for half the stale time) or
finds another run's lock in place of its own has lost the lock: `ensure_held`
then fails, and the engine calls it before every commit point (the manifest,
deletions), so a run that lost its lock never commits.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from ..errors import ConflictError, NotFoundError
from ..format.layout import LOCK
from ..stores import Store

REFRESH_SECONDS = 60.0
STALE_AFTER_SECONDS = 600.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class LockInfo:
    host: str
    pid: int
    operation: str
    started_at: datetime
    refreshed_at: datetime
    backup_id: str = ""
    token: str = ""
    pid_namespace: str = ""          # whose PIDs `pid` counts in ("" in locks of older versions)

    @property
    def owner(self) -> str:
        return f"{self.host}:{self.pid}"

    @property
    def silent_seconds(self) -> float:
        """Time since the holder last proved it is alive."""
        return (_now() - self.refreshed_at).total_seconds()

    def dead_local_holder(self) -> bool:
        """Its holder ran on this host, with the PIDs this process sees, and is gone (PID
        reuse aside, as restic). A lock without a PID namespace is never judged this way."""
        if self.host != socket.gethostname() or self.pid <= 0 or not self.pid_namespace \
                or self.pid_namespace != pid_namespace():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:     # alive, someone else's
            return False
        return False

    @classmethod
    def parse(cls, raw: bytes) -> "LockInfo":
        try:
            d = json.loads(raw)
            started = datetime.fromisoformat(d["started_at"])
            host, _, pid = str(d.get("owner", "")).rpartition(":")
            return cls(host=d.get("host", host), pid=int(d.get("pid", pid or 0)), operation=d["operation"],
                       started_at=started,
                       refreshed_at=datetime.fromisoformat(d.get("refreshed_at") or d["started_at"]),
                       backup_id=d.get("backup_id", ""), token=d.get("token", ""),
                       pid_namespace=d.get("pid_namespace", ""))
        except (ValueError, KeyError, TypeError):
            epoch = datetime.fromtimestamp(0, timezone.utc)
            return cls("unknown (unreadable lock file)", 0, "unknown", epoch, epoch)

    def to_json(self) -> bytes:
        return json.dumps({
            "owner": self.owner, "host": self.host, "pid": self.pid, "operation": self.operation,
            "started_at": self.started_at.isoformat(), "refreshed_at": self.refreshed_at.isoformat(),
            "backup_id": self.backup_id, "token": self.token, "pid_namespace": self.pid_namespace,
        }).encode()


def pid_namespace() -> str:
    """This process's PID namespace ("pid:[4026531836]"), or "" where there is none to read."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class Lock:
    def __init__(self, store: Store, operation: str, backup_id: str = "",
                 stale_after: float = STALE_AFTER_SECONDS, refresh_every: float = REFRESH_SECONDS,
                 key: str = LOCK):
        self.store, self.operation, self.backup_id = store, operation, backup_id
        self.key = key      # the oplog shipper has a lock of its own: it runs while backups do
        self.stale_after = stale_after
        self.refresh_every = min(refresh_every, stale_after / 4)
        self.held = False
        self._info: LockInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = ""

    def read(self) -> LockInfo | None:
        try:
            return LockInfo.parse(self.store.get_bytes(self.key))
        except NotFoundError:
            return None

    def _why_stale(self, info: LockInfo) -> str:
        if info.dead_local_holder():
            return f"its process {info.pid} on this host is gone"
        if info.silent_seconds > self.stale_after:
            return f"not refreshed for {_age(info.silent_seconds)}"
        return ""

    def acquire(self, break_lock: bool = False, warn: Callable[[str], None] | None = None) -> None:
        """Take the lock, taking over a stale one; `break_lock` removes a live one first."""
        now = _now()
        mine = LockInfo(socket.gethostname(), os.getpid(), self.operation, now, now, self.backup_id,
                        secrets.token_hex(8), pid_namespace())
        for _ in range(3):      # a retry when the holder released it between our calls
            try:
                created = self.store.create_exclusive(self.key, mine.to_json())
            except BaseException:
                # stopped (a signal) after the store may have made the lock, before we heard:
                # remove it if it is ours, or it outlives this run
                self.held, self._info = True, mine
                with contextlib.suppress(Exception):
                    self.release()
                self.held = False
                raise
            if created:
                self.held, self._info = True, mine
                self._start_heartbeat()
                return
            info = self.read()
            if info is None:
                continue
            what = f"{info.operation} by {info.owner}, started {_age((now - info.started_at).total_seconds())} ago"
            stale = self._why_stale(info)
            if stale or break_lock:
                if warn:
                    warn(f"breaking the {'stale ' if stale else ''}lock at {self.store} ({what}"
                         f"{'; ' + stale if stale else ''})")
                self.store.delete([self.key])
                break_lock = False     # break once; then compete fairly
                continue
            raise ConflictError(f"another run holds the lock at {self.store} ({what}, refreshed "
                                f"{_age(info.silent_seconds)} ago); wait for it, or rerun with --break-lock "
                                f"if it is dead")
        raise ConflictError(f"could not take the lock at {self.store}: another run keeps taking it")

    # -- the heartbeat
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="lock-heartbeat", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.refresh_every):
            try:
                self.refresh()
                last_ok = time.monotonic()
            except ConflictError as exc:
                self._lost = str(exc)
                return
            except Exception as exc:   # the store unreachable: keep trying until the lease runs out
                if time.monotonic() - last_ok > self.stale_after / 2:
                    self._lost = f"could not refresh the lock at {self.store} for {_age(time.monotonic() - last_ok)} ({exc})"
                    return

    def refresh(self) -> None:
        assert self._info is not None
        current = self.read()
        if current is None or current.token != self._info.token:
            who = current.owner if current else "nobody"
            raise ConflictError(f"lost the lock at {self.store}: it is now held by {who}")
        self._info.refreshed_at = _now()
        self.store.replace(self.key, self._info.to_json())

    def ensure_held(self) -> None:
        """Call before a commit point: fails if the lease was lost."""
        if self._lost:
            raise ConflictError(f"{self._lost}: nothing was committed by this run")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.held:
            current = self.read()
            if current is not None and self._info is not None and current.token == self._info.token:
                self.store.delete([self.key])
            self.held = False

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
