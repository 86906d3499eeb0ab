"""The package's layers point one way: front ends (cli, helm) -> engine -> mongo, stores, kube ->
format -> the base modules (errors, redact, output, limits, signals). This reads every import of every module
(also those inside functions) and fails on one that points up or sideways.

The front ends also skip no layer: they reach Kubernetes (and helm), the stores, MongoDB and the
on-disk format only through the engine (Repository.at, engine.keys, engine.preflight, and for the
helm plugin engine/release/operations.py), so a command stays options -> one engine call -> its
result."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mender_backup"

# component -> rank; a module may import its own component or any of lower rank
RANKS = {"base": 0, "format": 1, "stores": 2, "mongo": 2, "kube": 2, "engine": 3, "cli": 4, "helm": 4}
BASE = {"__init__", "errors", "redact", "output", "limits", "signals"}
# components a front end must not import directly, although they rank lower (see the docstring)
SKIPPED_BY = {"cli": {"kube", "stores", "mongo", "format"}, "helm": {"kube", "stores", "mongo", "format"}}


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
    ("mender_backup.helm.plugin", "from ..mongo import client\n"),
    ("mender_backup.helm.plugin", "from ..stores import parse_destination\n"),
    ("mender_backup.helm.plugin", "from ..kube.helm import Helm\n"),
    ("mender_backup.helm.plugin", "def f():\n    from ..kube import secrets\n"),
    ("mender_backup.engine.release.plan", "from ...helm import plugin\n"),
])
def test_the_check_catches_an_upward_or_sideways_import(module, source):
    assert len(violations(source, module)) == 1


def test_the_front_ends_may_use_the_engine_and_the_base():
    assert violations("from ..engine.release import operations\nfrom ..errors import UsageError\n",
                      "mender_backup.helm.plugin") == []
    assert violations("from ..engine import keys\nfrom ..output import Reporter\n", "mender_backup.cli.key") == []


MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of each function over MAX_FUNCTION_LINES whose text does not say why
    ("over 60 lines", in its docstring or a comment)."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            length = node.end_lineno - start + 1
            text = " ".join(" ".join(lines[start - 1:node.end_lineno]).replace("#", " ").split())
            if length > MAX_FUNCTION_LINES and f"over {MAX_FUNCTION_LINES} lines" not in text:
                out.append((node.name, length))
    return out


def test_rooms_stay_small():
    """Each module under ~300 lines, each function under 60 unless it says why it is longer."""
    big, long = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            big.append(f"{module_name(path)}: {len(source.splitlines())} lines")
        long += [f"{module_name(path)}.{name}: {n} lines" for name, n in long_functions(source)]
    assert big == [] and long == []


def test_the_size_check_catches_a_long_function_without_a_reason():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}") == [("f", MAX_FUNCTION_LINES + 1)]
    assert long_functions(f"def f():\n    # over {MAX_FUNCTION_LINES} lines: one table\n{body}") == []


# where a command starts: the only modules that read the process environment (into Settings)
READS_ENVIRONMENT = {"mender_backup.cli.common", "mender_backup.helm.common", "mender_backup.helm.plugin"}


def environment_reads(source: str) -> list[int]:
    """Lines that read the process environment: os.environ, os.getenv, os.environb."""
    return sorted(n.lineno for n in ast.walk(ast.parse(source))
            if (isinstance(n, ast.Attribute) and n.attr in ("environ", "environb", "getenv")
                and isinstance(n.value, ast.Name) and n.value.id == "os"))


def test_only_the_entry_points_read_the_environment():
    """Settings is built once from it where a command starts and passed down (engine/settings.py)."""
    found = [f"{module_name(p)}:{line}" for p in sorted(PACKAGE.rglob("*.py"))
             if module_name(p) not in READS_ENVIRONMENT for line in environment_reads(p.read_text())]
    assert found == []


def test_the_environment_check_sees_each_way_of_reading_it():
    assert environment_reads("import os\nos.environ.get('X')\nos.getenv('Y')\nx = os.environ['Z']\n") == [2, 3, 4]
    assert environment_reads("env.get('X')\n") == []
