"""Secrets: read their data, and change some of their keys (Mender reads its MongoDB
URL and bucket from Secrets through envFrom). Values never reach a message."""

from __future__ import annotations

import base64

from ..redact import register_secret
from .connection import Kube


def read(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    """The Secret's data, decoded. Callers register what is secret in it (a bucket name
    or a region is not, and scrubbing every value would mask words like "true")."""
    with kube.call(f"reading Secret {namespace}/{name}"):
        obj = kube.core.read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}


def keys(kube: Kube, namespace: str, name: str) -> set[str]:
    """Only the key names (what a Pod's secretKeyRef may reference)."""
    with kube.call(f"reading Secret {namespace}/{name}"):
        obj = kube.core.read_namespaced_secret(name, namespace)
    return set((obj.data or {}).keys()) | set((obj.string_data or {}).keys())


def set_keys(kube: Kube, namespace: str, name: str, values: dict[str, str]) -> None:
    """Set these keys (others stay as they are) in one patch."""
    for v in values.values():
        register_secret(v)
    body = {"data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}
    with kube.call(f"updating Secret {namespace}/{name}"):
        kube.core.patch_namespaced_secret(name, namespace, body)
