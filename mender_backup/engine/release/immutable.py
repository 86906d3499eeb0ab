"""What an upgrade changes that Kubernetes does not allow to change in place: a StatefulSet's
selector, serviceName, volumeClaimTemplates or podManagementPolicy. Chart 8.x's NATS subchart
(2.x) renders its StatefulSet with another selector and serviceName than 7.x's 0.19 did, and
`helm upgrade` alone fails there, after its migration Jobs have run.

The guarded upgrade deletes such a StatefulSet first, after the backup, leaving its pods
running (orphaned: NATS keeps serving while the migrations run), lets helm create the new one,
then deletes the old pods so the new StatefulSet can start its own. If the upgrade fails, the
StatefulSet is put back as it was and adopts its pods again. One that holds Mender's data (the
embedded MongoDB) is never touched: that upgrade is refused.

(Its client Service also turns from headless into a ClusterIP Service; the API server keeps a
Service's clusterIP when a patch drops it, so it stays headless, and clients reach NATS either way.)"""

from __future__ import annotations

from dataclasses import dataclass

from ruamel.yaml import YAML

from .chart import DATA_COMPONENTS

IMMUTABLE = ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")


@dataclass(frozen=True)
class Replaced:
    name: str
    fields: tuple[str, ...]
    holds_data: bool

    def __str__(self) -> str:
        return f"statefulset/{self.name}"


def _statefulsets(manifest: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in YAML(typ="safe").load_all(manifest or "")
            if isinstance(d, dict) and d.get("kind") == "StatefulSet"}


def replaced(current: str, target: str) -> list[Replaced]:
    """The StatefulSets of both rendered manifests whose immutable fields differ."""
    old, new = _statefulsets(current), _statefulsets(target)
    out = []
    for name in sorted(old.keys() & new.keys()):
        a, b = old[name].get("spec") or {}, new[name].get("spec") or {}
        fields = tuple(f for f in IMMUTABLE if a.get(f) != b.get(f))
        if fields:
            labels = old[name]["metadata"].get("labels") or {}
            component = labels.get("app.kubernetes.io/component") or labels.get("app.kubernetes.io/name") or ""
            out.append(Replaced(name, fields, component in DATA_COMPONENTS))
    return out
