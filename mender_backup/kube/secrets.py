"""Secrets by name through the Kubernetes API. `read`/`create`/`replace_data` keep values
as the API gives them (base64), so what is read and written back is byte for byte the
same (the Mender secrets bundle); `decoded`/`keys`/`set_keys` serve the restore of a
live release (Mender reads its MongoDB URL and bucket from Secrets through envFrom).
Values never reach a message."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from ..errors import NotFoundError
from ..redact import register_secret
from .connection import Kube, api_error


@dataclass
class SecretObject:
    name: str
    type: str = "Opaque"
    data: dict[str, str] = field(default_factory=dict)          # key -> base64, as the API has it
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def read(kube: Kube, namespace: str, name: str) -> SecretObject | None:
    from kubernetes.client.exceptions import ApiException
    try:
        s = kube.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise api_error(exc, f"reading Secret {namespace}/{name}", kube.server) from None
    except Exception as exc:
        raise api_error(exc, f"reading Secret {namespace}/{name}", kube.server) from None
    return SecretObject(name, s.type or "Opaque", dict(s.data or {}), dict(s.metadata.labels or {}),
                        dict(s.metadata.annotations or {}))


def create(kube: Kube, namespace: str, obj: SecretObject) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "type": obj.type, "data": obj.data,
            "metadata": {"name": obj.name, "namespace": namespace, "labels": obj.labels,
                         "annotations": obj.annotations}}
    with kube.call(f"creating Secret {namespace}/{obj.name}"):
        kube.core.create_namespaced_secret(namespace, body)


def replace_data(kube: Kube, namespace: str, name: str, data: dict[str, str], annotations: dict[str, str]) -> None:
    """Set the Secret's data to exactly `data` (keys not in it are removed); its other
    metadata (owner, labels) stays as it is."""
    with kube.call(f"replacing Secret {namespace}/{name}"):
        s = kube.core.read_namespaced_secret(name, namespace)
        s.data = data
        s.string_data = None
        s.metadata.annotations = {**(s.metadata.annotations or {}), **annotations}
        kube.core.replace_namespaced_secret(name, namespace, s)


def decoded(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    """The Secret's data, decoded. Callers register what is secret in it (a bucket name
    or a region is not, and scrubbing every value would mask words like "true")."""
    obj = read(kube, namespace, name)
    if obj is None:
        raise NotFoundError(f"Kubernetes API {kube.server}: Secret {namespace}/{name} not found")
    return {k: base64.b64decode(v) for k, v in obj.data.items()}


def keys(kube: Kube, namespace: str, name: str) -> set[str]:
    """Only the key names (what a Pod's secretKeyRef may reference)."""
    return set(decoded(kube, namespace, name))


def set_keys(kube: Kube, namespace: str, name: str, values: dict[str, str]) -> None:
    """Set these keys (others stay as they are) in one patch."""
    for v in values.values():
        register_secret(v)
    body = {"data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}
    with kube.call(f"updating Secret {namespace}/{name}"):
        kube.core.patch_namespaced_secret(name, namespace, body)
