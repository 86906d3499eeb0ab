"""What a Mender release's Secrets hold now, read for a plan: the keys Mender reads its stores
from, and the signing keys an upgrade must carry (registered as secrets: they go into values
files, never into output)."""

from __future__ import annotations

import json

from ...errors import NotFoundError
from ...kube import secrets as kube_secrets
from ...kube.connection import Kube
from ...redact import register_secret


def live_keys(kube: Kube, ns: str, name: str, keys: tuple[str, ...]) -> dict[str, str]:
    data = kube_secrets.decoded(kube, ns, name)
    return {k: data[k].decode() for k in keys if k in data}


def live_signing_key(kube: Kube, ns: str, secret: str) -> str | None:
    """The private key a signing-key Secret holds; None without the Secret or its private.pem."""
    try:
        pem = kube_secrets.decoded(kube, ns, secret).get("private.pem")
    except NotFoundError:
        return None
    return pem.decode() if pem else None


def register_signing_key(key: str) -> None:
    """A key that goes into values: never shown, as it is nor as it stands in a values file."""
    register_secret(key)
    register_secret(json.dumps(key)[1:-1])
