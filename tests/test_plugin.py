"""The helm plugin: installed through the real helm v3 and v4, and its commands'
sequences of helm calls.

Commands that need a cluster (get metadata/values/manifest, upgrade) go to a
fake HELM_BIN that answers from files and records every call; everything else
(search repo, template, lint) is passed on to the real helm. See
tests/PLUGIN_COVERAGE.md for what waits for the Kubernetes API issue.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mender_backup.errors import IntegrityError
from mender_backup.helm import plugin
from tests.helmutil import CHART, FIXTURES, ROOT, by_kind, helm_run, render

SECRET_PW = "Rest0re-Pw-4477"
NEW_URL = f"mongodb://mender:{SECRET_PW}@mongo-new.data.svc:27017/mender"


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


def test_global_flags_reach_the_plugins_helm_calls(installed, tmp_path):
    """`helm -n X --kube-context Y mender-backup ...`: the plugin's own helm call
    uses the same context (helm fails on it: there is no such context)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
        contexts: [{name: only-context, context: {cluster: c}}]
        current-context: only-context
    """))
    proc = helm_run(installed["helm"], "--kubeconfig", str(kubeconfig), "--kube-context", "ctx-from-flag",
                    "-n", "ns1", "mender-backup", "restore", "mender", "--backup", "latest",
                    env=installed["env"], check=False)
    assert proc.returncode != 0
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: helm ")]
    assert len(ours) == 1 and 'context "ctx-from-flag" does not exist' in ours[0], proc.stderr
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


# --- the commands' helm call sequences -----------------------------------------------------

FAKE_HELM = r'''#!{python}
"""Fake helm for the cluster-dependent calls; everything else goes to the real helm."""
import json, os, stat, sys
from pathlib import Path
state = Path(os.environ["FAKE_HELM_DIR"])
args = sys.argv[1:]
entry = {{"argv": args}}
def out(name):
    path = state / name
    if not path.exists():
        print(f"Error: release: not found ({{name}})", file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(path.read_text())
with open(state / "calls.jsonl", "a") as log:
    if args[:1] == ["upgrade"]:
        f = Path(args[args.index("-f") + 1])
        entry["values_mode"] = oct(stat.S_IMODE(f.stat().st_mode))
        entry["values"] = f.read_text()
        entry["values_path"] = str(f)
    log.write(json.dumps(entry) + "\n")
if args[:2] == ["get", "metadata"]:
    out(f"metadata-{{args[2]}}.json")
elif args[:2] == ["get", "values"]:
    out(f"all-{{args[2]}}.json" if "--all" in args else f"values-{{args[2]}}.yaml")
elif args[:2] == ["get", "manifest"]:
    out(f"manifest-{{args[2]}}.yaml")
elif args[:1] == ["upgrade"]:
    print(f"Release \"{{args[args.index('--install') + 1 if '--install' in args else 1]}}\" has been upgraded.")
else:
    os.execv(os.environ["FAKE_HELM_REAL"], [os.environ["FAKE_HELM_REAL"], *args])
'''


class Fake:
    def __init__(self, root: Path, real_helm: Path, monkeypatch):
        self.dir = root
        self.bin = root / "helm"
        self.bin.write_text(FAKE_HELM.format(python=sys.executable))
        self.bin.chmod(0o755)
        self.restores: list = []
        for key, value in {"HELM_BIN": str(self.bin), "FAKE_HELM_DIR": str(root), "FAKE_HELM_REAL": str(real_helm),
                           "HELM_NAMESPACE": "mender", "HELM_KUBECONTEXT": "prod-ctx"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.delenv("HELM_DEBUG", raising=False)

        def fake_restore(opts, reporter):
            self.restores.append(opts)
            with open(root / "calls.jsonl", "a") as log:
                log.write(json.dumps({"argv": ["<data restore>", opts.backup_id]}) + "\n")
        monkeypatch.setattr(plugin.engine_restore, "run", fake_restore)

    def release(self, name="mender", status="deployed", values=None, revision=7, version="5.1.0"):
        meta = {"name": name, "chart": "mender", "version": version, "appVersion": "4.0.0",
                "namespace": "mender", "revision": revision, "status": status}
        (self.dir / f"metadata-{name}.json").write_text(json.dumps(meta))
        (self.dir / f"values-{name}.yaml").write_text(values if values is not None
                                                       else (FIXTURES / "mender-values.yaml").read_text())
        (self.dir / f"all-{name}-backup.json").write_text(json.dumps({"destination": {"url": "s3://backups/prod"}}))

    def calls(self) -> list[dict]:
        path = self.dir / "calls.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def fake(helm, tmp_path, monkeypatch):
    return Fake(tmp_path, helm, monkeypatch)


def run_plugin(monkeypatch, capsys, *args, tty=False):
    monkeypatch.setattr(sys, "argv", ["mender-backup-helm", *args])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: tty, raising=False)
    with pytest.raises(SystemExit) as exc:
        plugin.main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture
def stand_in_repo(fake, tmp_path, monkeypatch):
    """The stand-in Mender chart in a local repo, for the real `helm search repo`."""
    pkg = tmp_path / "repo"
    pkg.mkdir()
    helm = Path(os.environ["FAKE_HELM_REAL"])
    helm_run(helm, "package", str(FIXTURES / "stand-in-mender"), "-d", str(pkg))
    helm_run(helm, "repo", "index", str(pkg), "--url", "https://charts.example.com")
    cache = tmp_path / "repo-cache"
    cache.mkdir()
    shutil.copy(pkg / "index.yaml", cache / "mender-index.yaml")
    (tmp_path / "repositories.yaml").write_text(
        "apiVersion: v1\nrepositories:\n- name: mender\n  url: https://charts.example.com\n")
    monkeypatch.setenv("HELM_REPOSITORY_CONFIG", str(tmp_path / "repositories.yaml"))
    monkeypatch.setenv("HELM_REPOSITORY_CACHE", str(cache))
    return pkg


def _flags_ok(argv):
    return argv[-4:] == ["--namespace", "mender", "--kube-context", "prod-ctx"]


def test_restore_sequence(fake, stand_in_repo, monkeypatch, capsys):
    fake.release()
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "20250101T030000Z-ab12",
                                "--mongodb-url", NEW_URL, "--bucket", "restored-artifacts", "--drop", "--yes")
    assert code == 0, err
    calls = fake.calls()
    steps = [" ".join(c["argv"][:3]) for c in calls]
    assert steps == ["get metadata mender", "get values mender", "search repo mender",
                     "get values mender-backup", "<data restore> 20250101T030000Z-ab12", "upgrade mender mender/mender"]
    assert calls[1]["argv"][:5] == ["get", "values", "mender", "-o", "yaml"]  # user values, not --all
    upgrade = calls[-1]
    assert upgrade["argv"][:9] == ["upgrade", "mender", "mender/mender", "--version", "5.1.0", "-f",
                                   upgrade["values_path"], "--reset-values", "--namespace"]
    assert "--reuse-values" not in upgrade["argv"]
    for c in calls:
        if c["argv"][0] in ("get", "upgrade"):
            assert _flags_ok(c["argv"]), c["argv"]
        assert not any(SECRET_PW in a for a in c["argv"]), "secret on a command line"
    assert upgrade["values_mode"] == "0o600"
    assert not Path(upgrade["values_path"]).exists(), "values file left behind"
    old = (FIXTURES / "mender-values.yaml").read_text()
    changed = [(a, b) for a, b in zip(old.splitlines(), upgrade["values"].splitlines()) if a != b]
    assert len(changed) == 2 and NEW_URL in changed[0][1] and "restored-artifacts" in changed[1][1]
    req = fake.restores[0]
    assert (req.backup_id, req.source, req.mongodb_url, req.artifacts_bucket, req.drop, req.dry_run) == (
        "20250101T030000Z-ab12", "s3://backups/prod", NEW_URL, "restored-artifacts", True, False)
    assert "helm rollback mender 7 --namespace mender --kube-context prod-ctx" in out
    assert "previous revision is 7" in err
    assert SECRET_PW not in out + err
    assert "mongodb://mender:***@mongo-new" in out  # the diff, redacted


def test_restore_dry_run_changes_nothing(fake, stand_in_repo, monkeypatch, capsys):
    fake.release()
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "latest",
                                "--mongodb-url", NEW_URL, "--dry-run")
    assert code == 0, err
    assert not [c for c in fake.calls() if c["argv"][0] == "upgrade"]
    assert fake.restores[0].dry_run is True
    assert "+    URL: \"mongodb://mender:***@mongo-new" in out
    assert "upgrade mender mender/mender --version 5.1.0" in err and "dry run: nothing was changed" in err
    assert SECRET_PW not in out + err


def test_restore_without_tty_needs_yes(fake, stand_in_repo, monkeypatch, capsys):
    fake.release()
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "latest", "--bucket", "b2")
    assert code == 2
    assert err.strip().splitlines()[-1] == "Error: refusing to change anything without --yes: stdin is not a terminal"
    assert not fake.restores and not [c for c in fake.calls() if c["argv"][0] == "upgrade"]


def test_restore_refuses_release_not_deployed(fake, monkeypatch, capsys):
    fake.release(status="failed")
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "latest", "--bucket", "b", "--yes")
    assert code == 4
    assert len(err.strip().splitlines()) == 1 and "failed, not deployed" in err
    assert not fake.restores


def test_restore_refuses_unknown_chart(fake, stand_in_repo, monkeypatch, capsys):
    fake.release(version="9.9.9")
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "latest", "--bucket", "b", "--yes")
    assert code == 3
    assert err.strip() == ("Error: chart mender 9.9.9 is not in any local helm repo: "
                           "`helm repo add`/`helm repo update`, or pass --chart")
    assert not fake.restores


def test_restore_with_explicit_chart_skips_search(fake, monkeypatch, capsys):
    fake.release()
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "latest", "--bucket", "b",
                                "--chart", str(FIXTURES / "stand-in-mender"), "--yes")
    assert code == 0, err
    argvs = [c["argv"] for c in fake.calls()]
    assert not [a for a in argvs if a[0] == "search"]
    assert argvs[-1][2] == str(FIXTURES / "stand-in-mender")


def test_failed_data_restore_leaves_release_alone(fake, stand_in_repo, monkeypatch, capsys):
    fake.release()

    def failing(opts, reporter):
        raise IntegrityError("archive sha256 mismatch")
    monkeypatch.setattr(plugin.engine_restore, "run", failing)
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "latest", "--bucket", "b", "--yes")
    assert code == 5 and "archive sha256 mismatch" in err
    assert not [c for c in fake.calls() if c["argv"][0] == "upgrade"]


def test_restore_into_existing_secret_release_is_refused(fake, monkeypatch, capsys):
    fake.release(values="global:\n  mongodb:\n    existingSecret: mongo-url\n")
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "mender", "--backup", "latest",
                                "--mongodb-url", NEW_URL, "--yes")
    assert code == 4 and "global.mongodb.existingSecret" in err


def test_unknown_release(fake, monkeypatch, capsys):
    code, out, err = run_plugin(monkeypatch, capsys, "restore", "nope", "--backup", "latest", "--yes")
    assert code == 3 and err.count("\n") == 1 and "not found" in err


def test_install_sequence(fake, monkeypatch, capsys, tmp_path):
    fake.release()
    code, out, err = run_plugin(monkeypatch, capsys, "install", "mender", "--destination", "s3://mender-backups/prod",
                                "--schedule", "@daily", "--chart-dir", str(CHART))
    assert code == 0, err
    calls = fake.calls()
    assert [" ".join(c["argv"][:3]) for c in calls] == ["get metadata mender", "get values mender",
                                                         "upgrade --install mender-backup"]
    up = calls[-1]
    assert up["argv"][3] == str(CHART) and _flags_ok(up["argv"])
    assert up["values_mode"] == "0o600" and not Path(up["values_path"]).exists()
    # the values are valid for our chart, and reference Mender's Secrets (no credential copied)
    values = tmp_path / "companion.yaml"
    values.write_text(up["values"])
    docs = render(Path(os.environ["FAKE_HELM_REAL"]), "-f", str(values))
    assert not by_kind(docs, "Secret")
    cj = by_kind(docs, "CronJob")[0]
    assert cj["spec"]["schedule"] == "@daily"
    env = {e["name"]: e for e in cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MONGODB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "mongodb-common", "key": "MONGO_URL"}
    assert "S3cr3t" not in up["values"] and "minio-Secret" not in up["values"]


def test_install_dry_run(fake, monkeypatch, capsys):
    fake.release()
    code, out, err = run_plugin(monkeypatch, capsys, "install", "mender", "--destination", "s3://b/p", "--dry-run",
                                "--chart-dir", str(CHART))
    assert code == 0, err
    assert "upgrade --install mender-backup" in out and "existingSecret: mongodb-common" in out
    assert not [c for c in fake.calls() if c["argv"][0] == "upgrade"]


@pytest.mark.parametrize("args,fragment", [
    (["--schedule", "every night"], "bad schedule"),
    (["--schedule", "0 25 * * *"], "not a valid hour"),
    (["--destination", "ftp://x/y"], "unsupported destination"),
])
def test_install_refuses_bad_input_before_any_change(fake, monkeypatch, capsys, args, fragment):
    fake.release()
    base = {"--destination": "s3://b/p"}
    argv = ["install", "mender", *sum(([k, v] for k, v in base.items() if k not in args), []), *args,
            "--chart-dir", str(CHART)]
    code, out, err = run_plugin(monkeypatch, capsys, *argv)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err
    assert not [c for c in fake.calls() if c["argv"][0] == "upgrade"]


def test_run_renders_a_job_from_the_cronjob(fake, monkeypatch, capsys):
    import kubernetes_validate
    from ruamel.yaml import YAML
    fake.release()
    manifest = helm_run(Path(os.environ["FAKE_HELM_REAL"]), "template", "mender-backup", str(CHART)).stdout
    (fake.dir / "manifest-mender-backup.yaml").write_text(manifest)
    code, out, err = run_plugin(monkeypatch, capsys, "run", "mender", "--dry-run")
    assert code == 0, err
    job = YAML(typ="safe").load(out)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "mender"
    assert job["metadata"]["name"].startswith("mender-backup-manual-")
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
    assert [c["argv"][:3] for c in fake.calls()][-1] == ["get", "manifest", "mender-backup"]


def test_list_reads_the_companion_destination(fake, monkeypatch, capsys, tmp_path):
    fake.release()
    dest = tmp_path / "backups-dest"
    (dest / "backups" / "20260101T030000Z-abcdef").mkdir(parents=True)
    (dest / "backups" / "20260101T030000Z-abcdef" / "mongodb.archive.zst").write_bytes(b"x" * 10)
    (fake.dir / "all-mender-backup.json").write_text(json.dumps({"destination": {"url": f"file://{dest}"}}))
    code, out, err = run_plugin(monkeypatch, capsys, "list", "mender", "--json")
    assert code == 0, err
    (rows,) = [json.loads(line)["result"] for line in out.splitlines() if '"result"' in line]
    assert [(r["id"], r["complete"]) for r in rows] == [("20260101T030000Z-abcdef", False)]
    assert [c["argv"][:3] for c in fake.calls()][-1] == ["get", "values", "mender-backup"]
