"""Asking each service of a release whether it is healthy, the way the chart itself asks:
the readiness probe (an HTTP GET) of each Deployment's container, sent to the Service that
selects its pods, through the API server's service proxy (no port-forward, no access to
the pod network from this machine). A pod can be Ready while its Service routes nowhere
(a selector the upgrade changed): this asks the path other services use."""

from __future__ import annotations

from dataclasses import dataclass

from ruamel.yaml import YAML

from .connection import Kube, api_error


@dataclass(frozen=True)
class Probe:
    workload: str        # deployment/<name>
    service: str
    port: str            # the Service port (number or name) that reaches the probed container port
    path: str

    def __str__(self) -> str:
        return f"{self.service}:{self.port}{self.path}"


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def probes(manifest: str) -> list[Probe]:
    """One probe per Deployment whose container has an HTTP readiness probe and a Service that
    selects its pods, read from a rendered manifest (`helm get manifest`)."""
    docs = [d for d in YAML(typ="safe").load_all(manifest) if isinstance(d, dict)]
    services = [d for d in docs if d.get("kind") == "Service"]
    out = []
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        tmpl = (d.get("spec") or {}).get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        for c in (tmpl.get("spec") or {}).get("containers") or []:
            get = ((c.get("readinessProbe") or {}).get("httpGet")) or {}
            if not get.get("path"):
                continue
            named = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            target = named.get(get.get("port"), get.get("port"))
            for s in services:
                spec = s.get("spec") or {}
                if not _selects(spec.get("selector") or {}, labels):
                    continue
                for p in spec.get("ports") or []:
                    tp = p.get("targetPort", p.get("port"))
                    if tp == target or named.get(tp) == target:
                        out.append(Probe(f"deployment/{d['metadata']['name']}", s["metadata"]["name"],
                                         str(p.get("port")), get["path"]))
                        break
                else:
                    continue
                break
    return out


def check(kube: Kube, namespace: str, probe: Probe) -> str | None:
    """None when the service answers 2xx; else why, in one line."""
    try:
        kube.core.connect_get_namespaced_service_proxy_with_path(
            f"{probe.service}:{probe.port}", namespace, probe.path.lstrip("/"))
    except Exception as exc:
        return str(api_error(exc, f"GET {probe}"))
    return None
