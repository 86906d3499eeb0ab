"""Waiting for a Job to finish, and why it failed, in one line."""

from __future__ import annotations

import time

from ..errors import MenderBackupError
from .connection import Kube


def job_state(kube: Kube, namespace: str, name: str) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", why): the Job's conditions, as `kubectl wait` reads them."""
    with kube.call(f"reading Job {namespace}/{name}"):
        status = kube.batch.read_namespaced_job_status(name, namespace).status
    for c in (status.conditions or []) if status else []:
        if c.status != "True":
            continue
        if c.type == "Complete":
            return "succeeded", ""
        if c.type == "Failed":
            return "failed", f"{c.reason or 'Failed'}: {c.message or ''}".rstrip(": ")
    return "running", ""


def wait_job(kube: Kube, namespace: str, name: str, timeout: float, poll: float = 2.0,
             clock=time.monotonic, sleep=time.sleep) -> None:
    """Until the Job succeeded; its failure or the timeout is one line naming the logs."""
    deadline = clock() + timeout
    logs = f"kubectl -n {namespace} logs job/{name}"
    while True:
        state, why = job_state(kube, namespace, name)
        if state == "succeeded":
            return
        if state == "failed":
            raise MenderBackupError(f"Job {namespace}/{name} failed ({why}): see {logs}")
        if clock() >= deadline:
            raise MenderBackupError(f"Job {namespace}/{name} did not finish within {timeout:.0f}s: see {logs}")
        sleep(poll)
