"""`make dist` (scripts/dist.sh): the release's chart and plugin tarballs, signed, with their
checksums; installed the way users install them: `helm plugin install <URL>` with the real
helm v3 and v4 from a web server, Helm 4 verifying the signature as it does by default, and
`helm verify` of the chart with the published key. A tampered file must be refused.
The signing key is a throw-away one made here with gpg (a release's comes from CI's secrets)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from mender_backup import __version__
from tests.conftest import need_tool
from tests.helmutil import ROOT, helm_run

KEY = "mender-backup test release <release@example.invalid>"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    # as a release host serves them: Helm 3 installs a plugin from a URL only when a HEAD of it
    # answers one of the gzip media types (Python's own guess for .tgz is application/x-tar)
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".tgz": "application/gzip"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gnupg(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("gnupg")
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", KEY, "rsa2048", "sign", "never"],
                   env=env, check=True, capture_output=True)
    return env


@pytest.fixture(scope="module")
def dist(gnupg, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "dist"
    r = subprocess.run([str(ROOT / "scripts" / "dist.sh"), str(out)], capture_output=True, text=True, timeout=300,
                       env={**gnupg, "HELM": str(need_tool("helm4")), "MENDER_BACKUP_SIGNING_KEY": KEY})
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def served(dist, tmp_path_factory):
    """dist/ and a tampered copy of it (one byte of each tarball changed, the .prov kept) over HTTP."""
    root = tmp_path_factory.mktemp("www")
    shutil.copytree(dist, root / "good")
    shutil.copytree(dist, root / "bad")
    for tgz in (root / "bad").rglob("*.tgz"):
        data = bytearray(tgz.read_bytes())
        data[len(data) // 2] ^= 0x01
        tgz.write_bytes(bytes(data))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def helm_home(base: Path) -> dict[str, str]:
    data = base / "data"
    (data / "plugins").mkdir(parents=True)
    return dict(os.environ, HELM_DATA_HOME=str(data), HELM_PLUGINS=str(data / "plugins"),
                HELM_CONFIG_HOME=str(base / "config"), HELM_CACHE_HOME=str(base / "cache"))


def test_dist_holds_the_signed_files_and_their_checksums(dist, gnupg, tmp_path):
    tgz = f"mender-backup-{__version__}.tgz"
    files = sorted(p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file())
    assert files == sorted(["SHA256SUMS", "SHA256SUMS.asc", "mender-backup-signing-key.gpg", f"chart/{tgz}",
                            f"chart/{tgz}.prov", f"plugin/helm3/{tgz}", f"plugin/helm4/{tgz}", f"plugin/helm4/{tgz}.prov"])
    subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=dist, check=True, capture_output=True)
    # what a user runs: the published key in a keyring of their own, the signature checked
    user = {**os.environ, "GNUPGHOME": str(tmp_path)}
    subprocess.run(["gpg", "--batch", "--import", str(dist / "mender-backup-signing-key.gpg")], env=user, check=True,
                   capture_output=True)
    ok = subprocess.run(["gpg", "--batch", "--verify", "SHA256SUMS.asc", "SHA256SUMS"], cwd=dist, env=user,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    tampered = tmp_path / "SHA256SUMS"
    tampered.write_text((dist / "SHA256SUMS").read_text().replace("chart/", "chart//", 1))
    bad = subprocess.run(["gpg", "--batch", "--verify", str(dist / "SHA256SUMS.asc"), str(tampered)], env=user,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "BAD signature" in bad.stderr
    assert "PRIVATE KEY" not in (dist / "mender-backup-signing-key.gpg").read_bytes().decode("latin-1")


def test_dist_refuses_to_replace_a_folder_of_other_things(gnupg, tmp_path):
    (tmp_path / "precious.txt").write_text("not a release")
    r = subprocess.run([str(ROOT / "scripts" / "dist.sh"), str(tmp_path)], capture_output=True, text=True,
                       env={**gnupg, "HELM": str(need_tool("helm4")), "MENDER_BACKUP_SIGNING_KEY": KEY})
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "refusing to replace it" in r.stderr
    assert (tmp_path / "precious.txt").read_text() == "not a release"


@pytest.mark.parametrize("helm", ["helm3", "helm4"])
def test_the_chart_verifies_with_the_published_key_and_a_tampered_one_does_not(served, dist, helm, tmp_path):
    tgz = f"mender-backup-{__version__}.tgz"
    keyring = str(dist / "mender-backup-signing-key.gpg")
    for kind in ("good", "bad"):            # downloaded as a user downloads them
        (tmp_path / kind).mkdir()
        for name in (tgz, tgz + ".prov"):
            with urllib.request.urlopen(f"{served}/{kind}/chart/{name}", timeout=30) as r:
                (tmp_path / kind / name).write_bytes(r.read())
    good = helm_run(need_tool(helm), "verify", str(tmp_path / "good" / tgz), "--keyring", keyring, check=False)
    assert good.returncode == 0 and "Signed by: " + KEY in good.stdout, good.stdout + good.stderr
    bad = helm_run(need_tool(helm), "verify", str(tmp_path / "bad" / tgz), "--keyring", keyring, check=False)
    assert bad.returncode != 0 and "sha256 sum does not match" in bad.stderr, bad.stdout + bad.stderr


def test_helm3_installs_the_plugin_from_its_url_and_runs_it(served, tmp_path):
    helm, env = need_tool("helm3"), helm_home(tmp_path)
    url = f"{served}/good/plugin/helm3/mender-backup-{__version__}.tgz"
    inst = helm_run(helm, "plugin", "install", url, env=env)
    assert "Installed plugin: mender-backup" in inst.stdout
    proc = helm_run(helm, "mender-backup", "--help", env=env)
    assert all(command in proc.stdout for command in ("install", "run", "list", "restore"))


def test_helm4_verifies_the_plugin_from_its_url_installs_and_runs_it(served, dist, tmp_path):
    helm, env = need_tool("helm4"), helm_home(tmp_path / "good")
    keyring = str(dist / "mender-backup-signing-key.gpg")
    url = f"{served}/good/plugin/helm4/mender-backup-{__version__}.tgz"
    inst = helm_run(helm, "plugin", "install", url, "--keyring", keyring, env=env)
    assert "Plugin Hash Verified: sha256:" in inst.stdout and "Installed plugin: mender-backup" in inst.stdout
    proc = helm_run(helm, "mender-backup", "--help", env=env)
    assert all(command in proc.stdout for command in ("install", "run", "list", "restore"))

    bad_env = helm_home(tmp_path / "bad")
    bad = helm_run(helm, "plugin", "install", url.replace("/good/", "/bad/"), "--keyring", keyring, env=bad_env,
                   check=False)
    assert bad.returncode != 0 and "plugin verification failed" in bad.stderr, bad.stdout + bad.stderr
    assert not any((tmp_path / "bad" / "data" / "plugins").iterdir())
