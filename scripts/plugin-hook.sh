#!/bin/sh
# Install/update hook of the helm plugin: a private Python environment with this
# package in it. Safe to re-run (`helm plugin update` runs it again): the venv is
# reused when it works, and pip reinstalls the package from the plugin directory.
#
# The venv is `.plugin-venv`, not `.venv`: a plugin installed from a local
# checkout is a symlink to it, and the checkout's own development .venv must not
# be overwritten.
set -eu

dir="${HELM_PLUGIN_DIR:-$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)}"
venv="$dir/.plugin-venv"

python="${MENDER_BACKUP_PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"
      break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "Error: mender-backup needs Python 3.11 or newer (set MENDER_BACKUP_PYTHON to one)" >&2
  exit 1
fi

# A venv whose interpreter no longer runs (Python upgraded or removed) is rebuilt.
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi

# The runtime dependencies exactly as locked (versions and hashes), then the package itself.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --require-hashes -r "$dir/requirements/runtime.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps "$dir"
"$venv/bin/mender-backup-helm" --help >/dev/null
echo "mender-backup: plugin environment ready ($venv)"
