"""The helm plugin installed through the real helm v3 and v4: both manifest formats, help,
helm's global flags, the install hook. Its commands against a cluster and the real Mender
charts are in test_kube_e2e.py and test_mender_restore.py (tests/PLUGIN_COVERAGE.md)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.helmutil import ROOT, helm_run



# --- the plugin installed through helm itself -----------------------------------------------

@pytest.fixture(scope="module", params=["helm3", "helm4"])
def installed(request, plugin_installs):
    """One real `helm plugin install <checkout>` per helm version and session (the
    hook builds a venv), shared with the end-to-end tests: see tests/conftest.py."""
    return plugin_installs(request.param)


def test_plugin_installs_and_is_listed(installed):
    assert "Installed plugin: mender-backup" in installed["install"].stdout
    listing = helm_run(installed["helm"], "plugin", "list", env=installed["env"]).stdout
    assert any(line.split()[:2] == ["mender-backup", "0.1.0"] for line in listing.splitlines())
    venv = installed["dir"] / ".plugin-venv"
    assert (venv / "bin" / "mender-backup-helm").exists()
    assert (venv / "bin" / "mender-backup").exists()


def test_help_through_helm(installed):
    proc = helm_run(installed["helm"], "mender-backup", "--help", env=installed["env"])
    for command in ("install", "run", "list", "restore"):
        assert command in proc.stdout
    proc = helm_run(installed["helm"], "mender-backup", "restore", "--help", env=installed["env"])
    assert "--mongodb-url" in proc.stdout and "--dry-run" in proc.stdout


def test_global_flags_reach_the_plugins_helm_and_kubernetes_calls(installed, tmp_path):
    """`helm --kubeconfig K --kube-context Y -n X mender-backup ...`: the plugin's own helm calls
    and its own Kubernetes client use the same kubeconfig and context (both fail on it: there
    is no such context)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
        contexts: [{name: only-context, context: {cluster: c}}]
        current-context: only-context
    """))
    flags = ["--kubeconfig", str(kubeconfig), "--kube-context", "ctx-from-flag", "-n", "ns1"]
    for command, prefix in ((["list", "mender"], "Error: helm get metadata: "),
                            (["restore", "mender", "--backup", "latest"], "Error: kubeconfig: ")):
        proc = helm_run(installed["helm"], *flags, "mender-backup", *command, env=installed["env"], check=False)
        assert proc.returncode != 0
        ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ") and "exited with error" not in ln]
        assert len(ours) == 1 and ours[0].startswith(prefix), proc.stderr
        assert 'context "ctx-from-flag" does not exist' in ours[0]
        assert "Traceback" not in proc.stderr


def test_install_hook_is_idempotent(installed):
    venv_python = installed["dir"] / ".plugin-venv" / "bin" / "python"
    before = venv_python.resolve().stat().st_ino
    env = dict(installed["env"], HELM_PLUGIN_DIR=str(installed["dir"]))
    proc = subprocess.run([str(installed["dir"] / "scripts" / "plugin-hook.sh")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "plugin environment ready" in proc.stdout
    assert venv_python.resolve().stat().st_ino == before  # venv reused, not rebuilt
    helm_run(installed["helm"], "mender-backup", "--help", env=installed["env"])


def test_plugin_yaml_legacy_format():
    from ruamel.yaml import YAML
    meta = YAML(typ="safe").load((ROOT / "plugin.yaml").read_text())
    assert meta["name"] == "mender-backup"
    assert "apiVersion" not in meta  # legacy format: the one both Helm 3 and 4 read
    assert meta["platformCommand"][0]["command"] == "$HELM_PLUGIN_DIR/scripts/plugin-run.sh"
    assert set(meta["platformHooks"]) == {"install", "update"}
    for script in ("plugin-run.sh", "plugin-hook.sh"):
        assert os.access(ROOT / "scripts" / script, os.X_OK)


def test_the_two_manifests_describe_the_same_plugin():
    from ruamel.yaml import YAML
    legacy = YAML(typ="safe").load((ROOT / "plugin.yaml").read_text())
    v1 = YAML(typ="safe").load((ROOT / "plugin-helm4.yaml").read_text())
    assert (v1["apiVersion"], v1["type"], v1["runtime"]) == ("v1", "cli/v1", "subprocess")
    assert v1["name"] == legacy["name"] and v1["version"] == legacy["version"]
    assert v1["config"]["longHelp"] == legacy["description"]
    assert v1["config"]["ignoreFlags"] == legacy["ignoreFlags"]
    norm = lambda cmds: [(c["os"], c["command"].replace("${HELM_PLUGIN_DIR}", "$HELM_PLUGIN_DIR")) for c in cmds]
    assert norm(v1["runtimeConfig"]["platformCommand"]) == norm(legacy["platformCommand"])
    for hook in ("install", "update"):
        assert norm(v1["runtimeConfig"]["platformHooks"][hook]) == norm(legacy["platformHooks"][hook])


@pytest.fixture(scope="module")
def helm4_dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plugin-dist")
    proc = subprocess.run([str(ROOT / "scripts" / "plugin-dist.sh"), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out / "mender-backup"


def test_helm4_installs_and_runs_the_current_format(helm4, helm4_dist, tmp_path):
    from tests.helmutil import install_plugin_dir
    inst = install_plugin_dir(helm4, helm4_dist, tmp_path)
    assert "Installed plugin: mender-backup" in inst["install"].stdout
    listing = helm_run(helm4, "plugin", "list", env=inst["env"]).stdout
    assert any(line.split()[:2] == ["mender-backup", "0.1.0"] for line in listing.splitlines()), listing
    proc = helm_run(helm4, "mender-backup", "restore", "--help", env=inst["env"])
    assert "--dry-run" in proc.stdout
    assert "legacy" not in (inst["install"].stdout + inst["install"].stderr).lower()


def test_helm3_refuses_the_current_format_and_reads_the_legacy_one(helm3, helm4_dist, tmp_path):
    """Why plugin.yaml stays legacy: Helm 3 parses plugin.yaml strictly in the legacy format."""
    from tests.helmutil import install_plugin_dir
    with pytest.raises(AssertionError, match="apiVersion"):
        install_plugin_dir(helm3, helm4_dist, tmp_path)
