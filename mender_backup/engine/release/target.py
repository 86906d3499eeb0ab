"""The chart an upgrade moves a Mender release to, and what is known to go wrong between
two versions: our own list (what a restore or an upgrade of these charts has met), and the
"BREAKING CHANGES" the target chart's own CHANGELOG.md lists for the versions crossed."""

from __future__ import annotations

import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from ...errors import NotFoundError, UsageError
from ...kube.helm import Helm, ReleaseInfo
from ..mender import version_key
from .chart import SUPPORTED_MAJORS, MenderValues


@dataclass(frozen=True)
class TargetChart:
    ref: str
    name: str
    version: str
    app_version: str
    changelog: str = ""

    @property
    def major(self) -> int:
        return (version_key(self.version) or (0,))[0]


def _from_files(ref: str, files: dict[str, str]) -> TargetChart:
    meta = YAML(typ="safe").load(files.get("Chart.yaml") or "") or {}
    if not isinstance(meta, dict) or not meta.get("version"):
        raise UsageError(f"chart {ref}: no Chart.yaml with a version")
    return TargetChart(ref, str(meta.get("name") or ""), str(meta["version"]), str(meta.get("appVersion") or ""),
                       files.get("CHANGELOG.md", ""))


def _from_tgz(ref: str, path: Path) -> TargetChart:
    files = {}
    try:
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                parts = m.name.split("/")
                if len(parts) == 2 and parts[1] in ("Chart.yaml", "CHANGELOG.md") and m.isfile():
                    files[parts[1]] = tar.extractfile(m).read().decode("utf-8", "replace")
    except (OSError, tarfile.TarError) as exc:
        raise UsageError(f"chart {ref}: not a chart archive ({exc})") from None
    return _from_files(ref, files)


def read_target(helm: Helm, ref: str, version: str | None) -> TargetChart:
    """The chart `helm upgrade REF [--version V]` would install: a folder, an archive, or
    whatever `helm pull` fetches (a repo chart, oci://, a URL)."""
    local = Path(ref)
    if local.is_dir():
        return _from_files(ref, {n: (local / n).read_text() for n in ("Chart.yaml", "CHANGELOG.md")
                                 if (local / n).is_file()})
    if local.is_file():
        return _from_tgz(ref, local)
    with tempfile.TemporaryDirectory(prefix="mender-backup-chart-") as tmp:
        helm.pull(ref, version, tmp)
        got = sorted(Path(tmp).glob("*.tgz"))
        if not got:
            raise NotFoundError(f"helm pull {ref}: no chart archive came back")
        return _from_tgz(ref, got[0])


def check_target(info: ReleaseInfo, target: TargetChart, force: bool) -> None:
    if target.name != "mender" or target.major not in SUPPORTED_MAJORS:
        raise UsageError(f"{target.ref} is chart {target.name or '?'} {target.version}: only the Mender chart "
                         f"(mender-helm) 5.x to 8.x is supported; nothing was changed")
    if version_key(target.version) < version_key(info.version) and not force:
        raise UsageError(f"{target.ref} {target.version} is older than the release's chart {info.version}: a "
                         f"downgrade is usually not possible without restoring a backup (Mender's compatibility "
                         f"policy): use `helm mender-backup rollback {info.name}`, or pass --force")


def hazards(info: ReleaseInfo, current_major: int, target: TargetChart, mv: MenderValues) -> list[str]:
    """One line per thing known to break between the two versions, for this release."""
    out = []
    if current_major < 6 <= target.major:
        out.append("from chart 6.x on, useradm and device-auth generate a new signing key at every upgrade unless "
                   "one is set: the release's keys are carried (below), no session or device token is lost")
    if current_major < 8 <= target.major:
        out.append("chart 8.x replaces the NATS subchart (0.19 -> 2.x): its StatefulSet and JetStream streams are "
                   "made anew; Mender's workflows recreate the streams they use at start")
        if mv.embedded_mongodb:
            out.append("chart 8.x refuses mongodb.enabled together with global.mongodb.URL: the embedded MongoDB "
                       "must be turned off for an external one, or kept alone")
    if target.major - current_major > 1:
        out.append(f"the upgrade crosses {target.major - current_major} chart majors at once: every major's "
                   f"upgrade notes apply")
    out += [f"chart {v}: {line}" for v, line in breaking_changes(target.changelog, info.version, target.version)]
    return out


_SECTION = re.compile(r"^##\s+\[?v?(\d+\.\d+\.\d+)\]?")


def breaking_changes(changelog: str, after: str, upto: str) -> list[tuple[str, str]]:
    """(version, first line) of each breaking change the CHANGELOG lists for the versions in
    (after, upto]: release-please's "### ⚠ BREAKING CHANGES" bullets and git-cliff's
    "**BREAKING**:" lines, as the Mender charts' changelogs write them."""
    lo, hi = version_key(after), version_key(upto)
    out: list[tuple[str, str]] = []
    version, in_breaking = None, False
    for raw in changelog.splitlines():
        line = raw.strip()
        m = _SECTION.match(line)
        if m:
            version, in_breaking = m.group(1), False
            continue
        if version is None or not (lo < version_key(version) <= hi):
            continue
        if line.startswith("###"):
            in_breaking = "BREAKING" in line
        elif in_breaking and line.startswith(("* ", "- ")):
            out.append((version, line[2:].strip()))
        elif "**BREAKING**:" in line:
            out.append((version, line.split("**BREAKING**:", 1)[1].strip()))
    return out
