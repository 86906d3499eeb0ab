#!/usr/bin/env bash
# A helm plugin folder for Helm 4's current manifest format: the plugin's files (as git
# tracks them, plus new ones not ignored) with plugin-helm4.yaml as its plugin.yaml.
#   usage: scripts/plugin-dist.sh OUTDIR     then: helm plugin install OUTDIR/mender-backup
set -eu
root="$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)"
out="${1:?usage: plugin-dist.sh OUTDIR}/mender-backup"
rm -rf "$out"
mkdir -p "$out"
cd "$root"
git ls-files --cached --others --exclude-standard -z -- plugin.yaml plugin-helm4.yaml scripts requirements \
    mender_backup chart pyproject.toml README.md LICENSE 2>/dev/null |
  while IFS= read -r -d '' f; do
    [ -f "$f" ] || continue
    mkdir -p "$out/$(dirname -- "$f")"
    cp -p -- "$f" "$out/$f"
  done
mv "$out/plugin-helm4.yaml" "$out/plugin.yaml"
echo "$out"
