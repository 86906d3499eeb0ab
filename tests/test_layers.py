"""The package's layers point one way: front ends (cli, helm) -> engine -> mongo, stores, kube ->
format -> the base modules (errors, redact, output, limits, signals). This reads every import of every module
(also those inside functions) and fails on one that points up or sideways.

The front ends also skip no layer: they reach the stores, MongoDB and the on-disk format only through
the engine (Repository.at, engine.keys, engine.preflight), so a command stays options -> one engine
call -> its result. One exception, on purpose: helm -> kube. The helm plugin's job is the Kubernetes
side of a restore (stop and restart the release's workloads, read and write its Secrets, start a Job
from the companion CronJob); that is not backup logic the engine should own, and wrapping each call in
an engine function would add a layer that only forwards. `mender-backup` (cli) gets no such pass: what
it needs of Kubernetes (Mender's key Secrets) is the engine's business."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mender_backup"

# component -> rank; a module may import its own component or any of lower rank
RANKS = {"base": 0, "format": 1, "stores": 2, "mongo": 2, "kube": 2, "engine": 3, "cli": 4, "helm": 4}
BASE = {"__init__", "errors", "redact", "output", "limits", "signals"}
# components a front end must not import directly, although they rank lower (see the docstring)
SKIPPED_BY = {"cli": {"kube", "stores", "mongo", "format"}, "helm": {"stores", "mongo", "format"}}


def component(module: str) -> str:
    """mender_backup.engine.restore -> engine; mender_backup.errors -> base."""
    parts = module.split(".")
    assert parts[0] == "mender_backup", module
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of mender_backup in `source`."""
    out = []
    pkg = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("mender_backup")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mender_backup"):
                continue
            for a in node.names:    # `from . import x`: x may be a module, or a name in target
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if is_module(sub) else target))
    return out


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    mine = component(module)
    bad = []
    for line, target in imports(source, module, is_package):
        theirs = component(target)
        if theirs != mine and RANKS[theirs] >= RANKS[mine]:
            bad.append(f"{module}:{line} imports {target} ({mine} -> {theirs})")
        elif theirs in SKIPPED_BY.get(mine, ()):
            bad.append(f"{module}:{line} imports {target} ({mine} -> {theirs}: go through the engine)")
    return bad


def test_every_import_points_down():
    found = []
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20
    for path in modules:
        name = module_name(path)
        assert component(name) in RANKS, f"{name}: a component the layer rule does not know"
        found += violations(path.read_text(), name, path.name == "__init__.py")
    assert found == []


@pytest.mark.parametrize("module, source", [
    ("mender_backup.format.archive", "from ..engine import restore\n"),
    ("mender_backup.stores.s3", "def f():\n    from ..mongo.client import connect\n"),
    ("mender_backup.engine.restore", "import mender_backup.helm.values\n"),
    ("mender_backup.cli", "from .helm import plugin\n"),
    ("mender_backup.errors", "from .format import layout\n"),
    ("mender_backup.cli.verify", "from ..stores import destination_store\n"),
    ("mender_backup.cli.key", "def f():\n    from ..format.encryption import Key\n"),
    ("mender_backup.cli", "from .kube.connection import Kube\n"),
    ("mender_backup.helm.plan", "from ..mongo import client\n"),
    ("mender_backup.helm.companion", "from ..stores import parse_destination\n"),
])
def test_the_check_catches_an_upward_or_sideways_import(module, source):
    assert len(violations(source, module)) == 1


def test_helm_may_use_kube_directly_and_the_engine():
    assert violations("from ..kube.connection import Kube\nfrom ..engine import preflight\n",
                      "mender_backup.helm.plugin") == []
