"""Session fixtures: the real servers and tools of `make test-env`.

Under CI=true a missing server or tool is an error, never a skip: CI installs
everything with `make test-env` first, so a missing piece is a broken build.
`mongodb`/`new_mongodb` are the suite's MongoDB (DocumentDB); `ferretdb*` are
FerretDB v1, kept for what only it has (the oplog).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

from testenv import servers
from tests import manifests

IN_CI = os.environ.get("CI", "").lower() == "true"
# the modules that run pods on this machine's one Kubernetes node (testenv/node.py's lock):
# the live release, the guarded upgrade, our CronJob's pods
NODE_MODULES = ("tests/test_live_release.py", "tests/test_live_upgrade.py", "tests/test_node.py",
                "tests/test_oci_release.py")
# the other workers' longest modules (measured in CI), given out first so that no long one is
# left for the end while the other workers have nothing to do
LONG_MODULES = ("tests/test_never_lose.py", "tests/test_mender_restore.py", "tests/test_fuzz.py",
                "tests/test_mender_judges.py", "tests/test_azure_release.py", "tests/test_plugin.py",
                "tests/test_azure.py", "tests/test_backup_restore.py", "tests/test_dist.py", "tests/test_tenant_storage.py",
                "tests/test_faults.py", "tests/test_dockerfile.py")


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    """The node's modules first (the longest chain, and the worker that runs them must start
    with them), then the other long ones; each module's tests keep their order."""
    def rank(item):
        module = module_of(item.nodeid)
        if module in NODE_MODULES:
            return 0
        return 1 + LONG_MODULES.index(module) if module in LONG_MODULES else 1 + len(LONG_MODULES)
    items.sort(key=rank)


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs pytest-xdist workers. Each module goes to one worker whole (its module
    fixtures are made once), as --dist loadscope does, and the node's modules together to one
    worker, first: they take the node lock in turn, and the other workers run everything else
    meanwhile. (--dist loadgroup with xdist_group marks would do it, but with pytest 9.2 and
    xdist 3.8 it splits a group across workers: tried.)"""
    from xdist.scheduler import LoadScopeScheduling

    class NodeModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = module_of(nodeid)
            return "node" if module in NODE_MODULES else module

    config.option.loadscopereorder = False     # the order above
    return NodeModulesTogether(config, log)


WORKER_TIME: dict[str, list[float]] = {}      # worker -> [seconds in tests, tests]


def pytest_runtest_logreport(report):
    """On the controller: what each worker spent, to see how evenly the work was shared."""
    node = getattr(report, "node", None)
    if node is not None:
        spent = WORKER_TIME.setdefault(node.gateway.id, [0.0, 0])
        spent[0] += report.duration
        spent[1] += report.when == "call"


def pytest_terminal_summary(terminalreporter):
    if WORKER_TIME:
        terminalreporter.write_line("time in tests per worker: " + ", ".join(
            f"{worker} {spent:.0f} s ({tests} tests)" for worker, (spent, tests) in sorted(WORKER_TIME.items())))


def need_tool(name: str) -> Path:
    """A program `make test-env` builds; missing: a failure under CI, else a skip."""
    try:
        return servers.tool(name)
    except servers.ToolMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))




@contextlib.contextmanager
def servers_of_one_test(make):
    """start(...) -> a new server made by make(...); every one stopped when the test ends."""
    started = []

    def start(*args, **kw):
        server = make(*args, **kw)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for s in started:
            s.stop()


@pytest.fixture(scope="session")
def minio(tmp_path_factory):
    need_tool("minio")
    server = servers.start_minio(tmp_path_factory.mktemp("minio"))
    yield server
    manifests.audit_minio(server)
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    from testenv.seaweedfs import start_seaweedfs
    need_tool("weed")
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    manifests.audit_minio(server)
    server.stop()


@pytest.fixture(params=["minio", "seaweedfs"])
def s3(request):
    """An S3 service: a test that takes it runs against MinIO and against SeaweedFS (the two
    faces are the same: endpoint, keys, client(), env())."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    from testenv.azure_blob import start_azurite
    need_tool("azurite-blob")
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture
def container(azurite) -> str:
    """A fresh, empty Azure Blob container for one test."""
    return azurite.create_container(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture(autouse=True)
def secrets_registered_by_a_test_end_with_it():
    """`redact` keeps the secrets it learns for the life of the process (one command); in the
    suite's process they would outlive the test that registered them and mask the next test's
    text ("mender" from one test's password pieces in another's values diff)."""
    from mender_backup import redact
    before = set(redact._secrets)
    yield
    redact._secrets.clear()
    redact._secrets.update(before)


@pytest.fixture(scope="session", autouse=True)
def every_manifest_follows_the_format(tmp_path_factory):
    """After the session: every manifest our backups wrote under the tests' folders follows
    its schema (mender_backup/format/schemas/; MinIO buckets are audited when their server stops)."""
    yield
    manifests.audit_tree(tmp_path_factory.getbasetemp())


# --- MongoDB: DocumentDB is the suite's MongoDB; FerretDB v1 only where it alone will do ---

def _need_documentdb() -> None:
    if not (servers.DOCUMENTDB / "start.sh").exists():
        msg = f"DocumentDB not built in {servers.DOCUMENTDB}: run `make test-env`"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def documentdb(tmp_path_factory):
    """FerretDB v2 + DocumentDB (testenv/servers.py): MongoDB's index and type semantics."""
    _need_documentdb()
    server = servers.start_documentdb(tmp_path_factory.mktemp("documentdb"))
    yield server
    server.stop()


@pytest.fixture
def new_documentdb(tmp_path_factory):
    """Start fresh, empty DocumentDB servers for one test: new_documentdb(user=..., password=...)
    enforces authentication."""
    _need_documentdb()
    with servers_of_one_test(lambda **auth: servers.start_documentdb(tmp_path_factory.mktemp("documentdb-t"),
                                                                     **auth)) as start:
        yield start


@pytest.fixture(scope="session")
def mongodb(documentdb):
    """The suite's MongoDB (tests/ENVIRONMENT.md says which server is which)."""
    return documentdb


@pytest.fixture
def new_mongodb(new_documentdb):
    """Fresh servers of the suite's MongoDB, one test's own."""
    return new_documentdb


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory):
    need_tool("ferretdb")
    server = servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ferretdb2(tmp_path_factory):
    """A second, independent server: the target of migration restores."""
    need_tool("ferretdb")
    server = servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb2"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory):
    need_tool("pushgateway")
    server = servers.start_pushgateway(tmp_path_factory.mktemp("pushgateway"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def helm3() -> Path:
    return need_tool("helm3")


@pytest.fixture(scope="session")
def helm4() -> Path:
    return need_tool("helm4")


@pytest.fixture(scope="session", params=["helm3", "helm4"])
def helm(request) -> Path:
    return need_tool(request.param)


@pytest.fixture(scope="session")
def mongodump() -> Path:
    return need_tool("mongodump")


@pytest.fixture(scope="session")
def mongorestore() -> Path:
    return need_tool("mongorestore")


@pytest.fixture(scope="session")
def bsondump() -> Path:
    return need_tool("bsondump")


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
    need_tool("ferretdb")
    with servers_of_one_test(lambda **auth: servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb-t"),
                                                                   **auth)) as start:
        yield start


# --- what we ship: the image, and a node that runs it -------------------------------------

@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """Our image, built by `make image` with podman on the Debian base (testenv/image.py)."""
    from testenv import image as img
    import shutil
    try:
        if shutil.which("podman") is None:
            raise servers.ToolMissing("podman not found: run `make test-env` (as root: it installs Debian's)")
        img.podman_env()
    except servers.ToolMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return img.build(tmp_path_factory.mktemp("image") / "make-image.log")


@pytest.fixture(scope="session")
def kube_node(tmp_path_factory, image):
    """A second cluster whose node runs pods (kubelet, controller-manager, scheduler;
    testenv/node.py), with our image imported: only the tests of what we ship pay for it."""
    from testenv import kube
    for name in ("etcd", "kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler"):
        need_tool(name)
    cluster = kube.start_cluster(tmp_path_factory.mktemp("kube-node"), node=True)
    try:
        cluster.node.import_image(image.archive)
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture
def new_replica_set(tmp_path_factory):
    """Start fresh FerretDB servers that answer as a one-member replica set and keep an
    oplog (local.oplog.rs), for consistent backups and point-in-time recovery.
    start(max_entries=N) caps the oplog at N entries (trimmed every second): a roll-over."""
    need_tool("ferretdb")

    def make(max_entries: int | None = None):
        server = servers.start_ferretdb(tmp_path_factory.mktemp("ferretdb-rs"), replica_set="rs0")
        server.enable_oplog(max_entries=max_entries)
        return server

    with servers_of_one_test(make) as start:
        yield start


# --- a Kubernetes API (issue 5) and the plugin installed through helm ----------------------

@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory):
    """etcd + kube-apiserver on free 127.0.0.1 ports (tests/kube.py); no kubelet."""
    from testenv import kube
    need_tool("etcd")
    need_tool("kube-apiserver")
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
            done[name] = install_plugin(need_tool(name), tmp_path_factory.mktemp(f"plugin-{name}"))
        return done[name]

    return get


# --- the real Mender charts, served from a chart repository, and helm with our plugin ---------

@pytest.fixture(scope="session")
def mender_repo(tmp_path_factory, helm3):
    from tests.mender_release import serve_charts
    repo = serve_charts(helm3, tmp_path_factory.mktemp("mender-charts"))
    yield repo
    repo.close()


@pytest.fixture(scope="session")
def helm_e2e(kube_cluster, plugin_installs, mender_repo, tmp_path_factory):
    """helm_e2e("helm3") -> tests.mender_release.Helm: the real helm with our plugin
    installed, talking to the test API server, with the Mender chart repo added."""
    from tests.mender_release import helm_with_plugin
    made: dict = {}

    def get(name: str):
        if name not in made:
            made[name] = helm_with_plugin(name, plugin_installs(name), kube_cluster, mender_repo.url,
                                          tmp_path_factory.mktemp(f"e2e-{name}"))
        return made[name]

    return get
