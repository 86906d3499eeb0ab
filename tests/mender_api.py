"""A few calls of Mender's own APIs, for what smoke.sh does not do: a second user and a second
device, made on a live installation after a backup (the guarded upgrade's rollback must take
them away). The services are reached as smoke.sh reaches them: the ClusterIPs in the
namespace's mender env file (install.sh writes it), through kube-proxy."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (install.sh's mender env, smoke.sh's state.env with %q quoting undone)."""
    import shlex
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = " ".join(shlex.split(value)) if value else ""
    return out


def call(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Mender:
    """The management and device APIs of one installation, logged in as a user."""

    def __init__(self, env_file: Path, user: str, password: str):
        self.env = read_env(env_file)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        code, body = call("POST", self.env["USERADM_URL"] + "/api/management/v1/useradm/auth/login",
                          headers={"Authorization": f"Basic {basic}"})
        assert code == 200, (code, body)
        self.jwt = body.decode()

    def _mgmt(self, method: str, url: str, doc=None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.jwt}", "Content-Type": "application/json"}
        return call(method, url, json.dumps(doc).encode() if doc is not None else None, headers)

    def create_user(self, email: str, password: str) -> None:
        code, body = self._mgmt("POST", self.env["USERADM_URL"] + "/api/management/v1/useradm/users",
                                {"email": email, "password": password})
        assert code == 201, (code, body)

    def users(self) -> set[str]:
        code, body = self._mgmt("GET", self.env["USERADM_URL"] + "/api/management/v1/useradm/users")
        assert code == 200, (code, body)
        return {u["email"] for u in json.loads(body)}

    def accept_new_device(self, mac: str) -> str:
        """A device with identity {"mac": mac}: its auth request, accepted; -> its id."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        req = json.dumps({"id_data": json.dumps({"mac": mac}), "pubkey": pub, "tenant_token": ""}).encode()
        sig = base64.b64encode(key.sign(req, padding.PKCS1v15(), hashes.SHA256())).decode()
        url = self.env["DEVICEAUTH_URL"] + "/api/devices/v1/authentication/auth_requests"
        headers = {"Content-Type": "application/json", "X-MEN-Signature": sig}
        code, body = call("POST", url, req, headers)
        assert code == 401, (code, body)            # pending until accepted
        device = next(d for d in self.devices() if d["identity_data"].get("mac") == mac)
        code, body = self._mgmt("PUT", self.env["DEVICEAUTH_URL"] + f"/api/management/v2/devauth/devices/"
                                f"{device['id']}/auth/{device['auth_sets'][0]['id']}/status", {"status": "accepted"})
        assert code == 204, (code, body)
        code, body = call("POST", url, req, headers)
        assert code == 200, (code, body)            # the device authenticates
        return device["id"]

    def devices(self) -> list[dict]:
        code, body = self._mgmt("GET", self.env["DEVICEAUTH_URL"] + "/api/management/v2/devauth/devices")
        assert code == 200, (code, body)
        return json.loads(body)
