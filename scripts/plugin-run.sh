#!/bin/sh
# Entry point helm runs for `helm mender-backup ...`: the plugin's own venv.
set -eu
dir="${HELM_PLUGIN_DIR:-$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)}"
exe="$dir/.plugin-venv/bin/mender-backup-helm"
if [ ! -x "$exe" ]; then
  echo "Error: the plugin's Python environment is missing: run $dir/scripts/plugin-hook.sh" >&2
  exit 1
fi
exec "$exe" "$@"
