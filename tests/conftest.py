"""Session fixtures: the real servers and tools of `make test-env`.

Under CI=true a missing server or tool is an error, never a skip: CI installs
everything with `make test-env` first, so a missing piece is a broken build.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from testenv import servers
from tests import manifests

IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(name: str) -> Path:
    try:
        return servers.tool(name)
    except servers.ToolMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def minio(tmp_path_factory):
    _need("minio")
    server = servers.start_minio(tmp_path_factory.mktemp("minio"))
    yield server
    manifests.audit_minio(server)
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def every_manifest_follows_the_format(tmp_path_factory):
    """After the session: every manifest our backups wrote under the tests' folders follows
    docs/FORMAT.md's schema (MinIO buckets are audited when their server stops)."""
    yield
    manifests.audit_tree(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory):
    _need("ferretdb")
    server = servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ferretdb2(tmp_path_factory):
    """A second, independent server: the target of migration restores."""
    _need("ferretdb")
    server = servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb2"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def helm3() -> Path:
    return _need("helm3")


@pytest.fixture(scope="session")
def helm4() -> Path:
    return _need("helm4")


@pytest.fixture(scope="session", params=["helm3", "helm4"])
def helm(request) -> Path:
    return _need(request.param)


def _mongo_tool(name: str) -> Path:
    """mongodump/mongorestore cannot be built here (the module proxy refuses
    mongo-tools); `make test-env` records the exact refusal, and the interop
    tests report it instead of silently passing."""
    try:
        return servers.tool(name)
    except servers.ToolMissing as exc:
        unavailable = servers.BIN / f"{name}.unavailable"
        if unavailable.exists():
            pytest.skip(f"{name} unavailable on this machine: {unavailable.read_text().strip()}")
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mongodump() -> Path:
    return _mongo_tool("mongodump")


@pytest.fixture(scope="session")
def mongorestore() -> Path:
    return _mongo_tool("mongorestore")


@pytest.fixture
def bucket(minio) -> str:
    """A fresh, empty bucket for one test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    minio.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def dbname() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def new_ferretdb(tmp_path_factory):
    """Start fresh, empty FerretDB servers for one test (tests that own whole databases)."""
    _need("ferretdb")
    started = []

    def start(**auth):
        server = servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb-t"), **auth)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def new_replica_set(tmp_path_factory):
    """Start fresh FerretDB servers that answer as a one-member replica set and keep an
    oplog (local.oplog.rs), for consistent backups and point-in-time recovery.
    start(max_entries=N) caps the oplog at N entries (trimmed every second): a roll-over."""
    _need("ferretdb")
    started = []

    def start(max_entries: int | None = None):
        server = servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb-rs"), replica_set="rs0")
        started.append(server)
        server.enable_oplog(max_entries=max_entries)
        return server

    yield start
    for s in started:
        s.stop()


# --- a Kubernetes API (issue 5) and the plugin installed through helm ----------------------

@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory):
    """etcd + kube-apiserver on free 127.0.0.1 ports (tests/kube.py); no kubelet."""
    from testenv import kube
    _need("etcd")
    _need("kube-apiserver")
    cluster = kube.start_cluster(tmp_path_factory.mktemp("kube"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def plugin_installs(tmp_path_factory):
    """`helm plugin install <checkout>`, once per helm version and session:
    plugin_installs("helm3") -> see tests.helmutil.install_plugin."""
    from tests.helmutil import install_plugin
    done: dict = {}

    def get(name: str) -> dict:
        if name not in done:
            done[name] = install_plugin(_need(name), tmp_path_factory.mktemp(f"plugin-{name}"))
        return done[name]

    return get
