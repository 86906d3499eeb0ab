"""What a run tells the outside world: its metrics, pushed to a Prometheus Pushgateway,
and a webhook notification (Slack-compatible `{"text": ...}`) when it fails.

    MENDER_BACKUP_PUSHGATEWAY_URL   http(s)://[user:password@]host:port of the Pushgateway
    MENDER_BACKUP_WEBHOOK_URL       incoming-webhook URL (a secret: scrubbed from all output)

Neither turns a successful run into a failed one: a push or a notification that fails
is a warning line (and `metrics_pushed: false` in the result), so it is seen.

Metrics are pushed with POST (pushadd): a failed run replaces the outcome metrics of
its group, never the last success time, which keeps the time of the last success for
the "no successful backup for 26 h" alert. Group: job="mender-backup",
operation=backup|verify, destination=<the destination URL>.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from ..output import Reporter
from ..redact import redact_url, register_secret, register_url_secrets, scrub

PUSHGATEWAY_ENV = "MENDER_BACKUP_PUSHGATEWAY_URL"
WEBHOOK_ENV = "MENDER_BACKUP_WEBHOOK_URL"
JOB = "mender-backup"
TIMEOUT = 10.0

# name -> help; `last_success_*` are pushed only by a run that succeeded
METRICS = {
    "last_run_timestamp_seconds": "When the last run ended (Unix time).",
    "last_run_success": "1 if the last run succeeded, 0 if it failed.",
    "last_run_exit_code": "Exit code of the last run (README, Exit codes).",
    "last_run_duration_seconds": "How long the last run took.",
    "last_success_timestamp_seconds": "When the last successful run ended (Unix time).",
    "last_success_duration_seconds": "How long the last successful run took.",
    "last_success_archive_bytes": "Bytes of the archive the last successful backup stored.",
    "last_success_documents": "Documents in the last successful backup (or test restore).",
    "last_success_collections": "Collections re-read by the last successful verification.",
    "last_success_artifacts": "Artifacts the last successful backup references.",
    "last_success_artifacts_copied": "Artifacts the last successful backup copied (new ones).",
    "last_success_artifact_bytes_copied": "Bytes of artifacts the last successful backup copied.",
}


class Observer:
    def __init__(self, operation: str, destination: str, reporter: Reporter, env: Mapping[str, str]):
        self.operation, self.reporter = operation, reporter
        self.destination = redact_url(destination or "")
        self.pushgateway = (env.get(PUSHGATEWAY_ENV) or "").strip()
        self.webhook = (env.get(WEBHOOK_ENV) or "").strip()
        register_url_secrets(self.pushgateway)
        register_secret(self.webhook)           # its path is the credential (Slack, Teams, ...)
        self.started = time.time()
        self.success: dict[str, float] | None = None
        self.finished = False

    def succeeded(self, **stats: float) -> None:
        """The operation itself completed (a later step, e.g. retention, may still fail)."""
        self.success = {k: float(v) for k, v in stats.items() if v is not None}

    def finish(self, exit_code: int, message: str = "") -> bool | None:
        """Push the metrics and, on failure, notify. -> whether the push worked (None: no
        Pushgateway configured). Runs once."""
        if self.finished:
            return None
        self.finished = True
        pushed = self._push(exit_code) if self.pushgateway else None
        if exit_code != 0 and self.webhook:
            self._notify(exit_code, message)
        return pushed

    # -- Pushgateway
    def _push(self, exit_code: int) -> bool:
        from prometheus_client import CollectorRegistry, Gauge
        from prometheus_client.exposition import basic_auth_handler, default_handler, pushadd_to_gateway

        now = time.time()
        values = {"last_run_timestamp_seconds": now, "last_run_success": 1.0 if exit_code == 0 else 0.0,
                  "last_run_exit_code": float(exit_code), "last_run_duration_seconds": now - self.started}
        if self.success is not None:
            values["last_success_timestamp_seconds"] = now
            values["last_success_duration_seconds"] = now - self.started
            values.update({f"last_success_{k}": v for k, v in self.success.items() if f"last_success_{k}" in METRICS})
        registry = CollectorRegistry()
        for name, value in values.items():
            Gauge(f"mender_backup_{name}", METRICS[name], registry=registry).set(value)

        parts = urlsplit(self.pushgateway)
        url, handler = self.pushgateway, default_handler
        if parts.username is not None:
            user, password = parts.username, parts.password or ""
            url = urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                              parts.path, parts.query, parts.fragment))

            def with_auth(u, method, timeout, headers, data):
                return basic_auth_handler(u, method, timeout, headers, data, user, password)
            handler = with_auth
        try:
            pushadd_to_gateway(url, job=JOB, registry=registry, timeout=TIMEOUT, handler=handler,
                               grouping_key={"operation": self.operation, "destination": self.destination})
        except Exception as exc:    # never fails the run; always seen
            self.reporter.warn(f"metrics not pushed to {redact_url(self.pushgateway)}: "
                               f"{scrub(_describe(exc))}", metrics_pushed=False)
            return False
        return True

    # -- webhook
    def _notify(self, exit_code: int, message: str) -> None:
        text = (f"mender-backup {self.operation} FAILED on {socket.gethostname()} (exit {exit_code}): "
                f"{scrub(message)} [destination {self.destination}]")
        req = urllib.request.Request(self.webhook, data=json.dumps({"text": text}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                r.read()
        except Exception as exc:
            # the URL is a secret: say what failed, never where
            self.reporter.warn(f"failure notification not sent (webhook): {scrub(_describe(exc))}",
                               notified=False)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
