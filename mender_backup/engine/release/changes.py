"""What a restore plan changes in a release: values and Secrets (plan.py gathers them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SecretChange:
    name: str
    values: dict[str, str]               # key -> new value (secret: never printed)
    why: str


@dataclass
class Changes:
    """What the plan changes, gathered by the steps of `plan.build`."""
    values: dict[tuple[str, ...], object] = field(default_factory=dict)    # path in the values -> new value
    secrets: list[SecretChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
