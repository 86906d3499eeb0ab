#!/usr/bin/env bash
# The version lives in mender_backup/__init__.py; helm reads its own copies from the
# plugin manifests and Chart.yaml. This writes VERSION into all of them at once
# (tests/test_packaging.py fails when they differ).
#   usage: scripts/set-version.sh 0.2.0
set -euo pipefail
v="${1:?usage: set-version.sh VERSION}"
[[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || { echo "error: $v is not a semantic version" >&2; exit 2; }
cd "$(dirname "$0")/.."
sed -i -E "s/^__version__ = \".*\"$/__version__ = \"$v\"/" mender_backup/__init__.py
sed -i -E "s/^version: .*/version: $v/" plugin.yaml plugin-helm4.yaml
sed -i -E "s/^version: .*/version: $v/; s/^appVersion: .*/appVersion: \"$v\"/" chart/Chart.yaml
grep -H -E "^(__version__|version|appVersion)" mender_backup/__init__.py plugin.yaml plugin-helm4.yaml chart/Chart.yaml
