#!/usr/bin/env bash
# A helm plugin folder: the plugin's files (as git tracks them, plus new ones not ignored)
# with one manifest as its plugin.yaml: Helm 4's current format (plugin-helm4.yaml, the
# default), or the legacy one Helm 3 and 4 both read (plugin.yaml, `legacy`).
# CHART_DIR: the chart to bundle instead of chart/ (a release's, stamped with its image digest).
#   usage: scripts/plugin-dist.sh OUTDIR [current|legacy]   then: helm plugin install OUTDIR/mender-backup
set -eu
root="$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)"
out="${1:?usage: plugin-dist.sh OUTDIR [current|legacy]}/mender-backup"
format="${2:-current}"
case "$format" in current|legacy) ;; *) echo "error: manifest format $format: current or legacy" >&2; exit 2 ;; esac
rm -rf "$out"
mkdir -p "$out"
cd "$root"
git ls-files --cached --others --exclude-standard -z -- plugin.yaml plugin-helm4.yaml scripts requirements \
    mender_backup chart pyproject.toml README.md LICENSE ':(exclude)scripts/image-sign' 2>/dev/null |
  while IFS= read -r -d '' f; do
    [ -f "$f" ] || continue
    mkdir -p "$out/$(dirname -- "$f")"
    cp -p -- "$f" "$out/$f"
  done
if [ -n "${CHART_DIR:-}" ]; then
  rm -rf "$out/chart" && cp -r "$CHART_DIR" "$out/chart"
fi
if [ "$format" = current ]; then
  mv "$out/plugin-helm4.yaml" "$out/plugin.yaml"
else
  rm "$out/plugin-helm4.yaml"
fi
echo "$out"
