"""After a restore: ask each Mender service whether it is healthy, over its own internal
health endpoint (what Mender's Kubernetes probes and its services' clients call).

The paths are those mender-server v4.1.3's routers serve (backend/services/*/api/http):
`/api/internal/v1/<service>/health` (deviceauth's prefix is `devauth`), except workflows'
`/api/v1/health`. A healthy service answers 204 (200 accepted); each checks its MongoDB
and some also what they depend on (workflows: NATS; deviceauth: inventory, workflows),
so one stopped service may make others unhealthy too: every line names its own service.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from ..errors import UsageError

HEALTH_PATHS = {
    "useradm": "/api/internal/v1/useradm/health",
    "deviceauth": "/api/internal/v1/devauth/health",
    "inventory": "/api/internal/v1/inventory/health",
    "deployments": "/api/internal/v1/deployments/health",
    "workflows": "/api/v1/health",
    "deviceconnect": "/api/internal/v1/deviceconnect/health",
    "deviceconfig": "/api/internal/v1/deviceconfig/health",
    "iot-manager": "/api/internal/v1/iot-manager/health",
}
# other spellings of a service in host names (chart services are mender-<name>; some
# installs say device-auth, iot_manager, ...), longest first so deviceauth wins over "auth"
_ALIASES = sorted({**{s: s for s in HEALTH_PATHS}, "devauth": "deviceauth", "device-auth": "deviceauth",
                   "iotmanager": "iot-manager", "iot_manager": "iot-manager", "device-connect": "deviceconnect",
                   "device-config": "deviceconfig", "workflows-server": "workflows"}.items(),
                  key=lambda kv: -len(kv[0]))
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Target:
    service: str
    url: str           # the service's base URL: scheme://host:port

    @property
    def health_url(self) -> str:
        return self.url.rstrip("/") + HEALTH_PATHS[self.service]


@dataclass(frozen=True)
class Health:
    service: str
    url: str
    healthy: bool
    detail: str        # "204", or why not: "HTTP 503: error reaching MongoDB", "unreachable: ..."


def parse_targets(values: list[str]) -> list[Target]:
    """Each value a comma- or space-separated list of SERVICE=URL or URL; a bare URL's
    service is read from its host name (http://mender-useradm:8080 is useradm's)."""
    targets: list[Target] = []
    for item in (x for v in values for x in re.split(r"[,\s]+", v) if x):
        name, sep, url = item.partition("=")
        if sep and "://" not in name:
            service = _service_named(name)
            if service is None:
                raise UsageError(f"--mender {item}: unknown Mender service {name!r} "
                                 f"(known: {', '.join(HEALTH_PATHS)})")
        else:
            url = item
            host = urllib.parse.urlsplit(url).hostname or ""
            service = _service_named(host, within=True)
            if service is None:
                raise UsageError(f"--mender {item}: cannot tell which Mender service this is from its host "
                                 f"name; write SERVICE=URL (services: {', '.join(HEALTH_PATHS)})")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--mender {item}: not an http(s) URL")
        targets.append(Target(service, f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"))
    if not targets:
        raise UsageError("--mender: no service URL given")
    return targets


def _service_named(name: str, within: bool = False) -> str | None:
    name = name.lower()
    for alias, service in _ALIASES:
        if name == alias or (within and alias in name):
            return service
    return None


def check(target: Target, timeout: float = TIMEOUT_S) -> Health:
    req = urllib.request.Request(target.health_url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Health(target.service, target.url, r.status in (200, 204), str(r.status))
    except urllib.error.HTTPError as exc:
        return Health(target.service, target.url, False, f"HTTP {exc.code}{_reason(exc)}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Health(target.service, target.url, False, f"unreachable: {reason}")


def _reason(exc: urllib.error.HTTPError) -> str:
    """Mender's error body is {"error": "..."}; its text, else nothing."""
    try:
        body = json.loads(exc.read(4096) or b"{}")
        return f": {body['error']}" if isinstance(body, dict) and body.get("error") else ""
    except (ValueError, OSError):
        return ""


def check_all(targets: list[Target], timeout: float = TIMEOUT_S) -> list[Health]:
    """Every target at once (a black-holed host costs one timeout, not one each), in the given order."""
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(lambda t: check(t, timeout), targets))


@dataclass
class HealthReport:
    """`verify --mender`: one line per service checked; `sick` says which failed."""
    checked: list[Health]

    @property
    def sick(self) -> str:
        """'' when every service is healthy, else one line naming the unhealthy ones."""
        bad = [f"{h.service} ({h.detail})" for h in self.checked if not h.healthy]
        return f"{len(bad)} of {len(self.checked)} Mender services unhealthy: {', '.join(bad)}" if bad else ""

    def to_json(self) -> dict:
        return {"healthy": all(r.healthy for r in self.checked), "services": [asdict(r) for r in self.checked]}

    def describe(self) -> str:
        width = max(len(r.service) for r in self.checked)
        return "\n".join(f"{'ok  ' if r.healthy else 'FAIL'}  {r.service:<{width}}  {r.url}  "
                         f"{'healthy (' + r.detail + ')' if r.healthy else r.detail}" for r in self.checked)


def report(specs: list[str], timeout: float = TIMEOUT_S) -> HealthReport:
    """Every service named in `specs` (SERVICE=URL or URL, comma-separated or repeated) checked."""
    return HealthReport(check_all(parse_targets(specs), timeout))
