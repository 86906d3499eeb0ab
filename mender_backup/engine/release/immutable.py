"""What an upgrade changes that Kubernetes does not allow to change in place. Chart 8.x's NATS
subchart (2.x) renders its StatefulSet with another selector and serviceName than 7.x's 0.19
did, and its client Service as a ClusterIP Service where 0.19's was headless (the API server
keeps a Service's clusterIP when a patch drops it: the Service would stay headless, unlike
the release's manifest). `helm upgrade` fails on the first (after it has begun to apply the
release) and silently keeps the second; the guarded upgrade deletes both kinds of object
first (after the backup) and helm creates them anew. A StatefulSet that holds Mender's data
(the embedded MongoDB) is never deleted: that upgrade is refused."""

from __future__ import annotations

from dataclasses import dataclass

from ruamel.yaml import YAML

from .chart import DATA_COMPONENTS

IMMUTABLE = {"StatefulSet": ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")}


@dataclass(frozen=True)
class Replaced:
    kind: str
    name: str
    fields: tuple[str, ...]
    holds_data: bool

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


def _objects(manifest: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in YAML(typ="safe").load_all(manifest or "")
            if isinstance(d, dict) and d.get("kind") in ("StatefulSet", "Service")}


def _changed(kind: str, a: dict, b: dict) -> tuple[str, ...]:
    if kind == "Service":
        headless = [s.get("clusterIP") == "None" for s in (a, b)]
        return ("clusterIP",) if headless[0] != headless[1] else ()
    return tuple(f for f in IMMUTABLE[kind] if a.get(f) != b.get(f))


def replaced(current: str, target: str) -> list[Replaced]:
    """The StatefulSets and Services of both rendered manifests that cannot change in place."""
    old, new = _objects(current), _objects(target)
    out = []
    for kind, name in sorted(old.keys() & new.keys()):
        fields = _changed(kind, old[kind, name].get("spec") or {}, new[kind, name].get("spec") or {})
        if fields:
            labels = old[kind, name]["metadata"].get("labels") or {}
            component = labels.get("app.kubernetes.io/component") or labels.get("app.kubernetes.io/name") or ""
            out.append(Replaced(kind, name, fields, kind == "StatefulSet" and component in DATA_COMPONENTS))
    return out
