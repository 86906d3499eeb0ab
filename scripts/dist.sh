#!/usr/bin/env bash
# The files of a release, signed, into OUTDIR (default dist/), for `make dist`:
#   chart/mender-backup-<v>.tgz (+ .prov)          the chart, packaged and signed by helm
#   plugin/helm4/mender-backup-<v>.tgz (+ .prov)   the plugin for Helm 4 (its current manifest),
#                                                  packaged and signed by `helm plugin package`;
#                                                  `helm plugin install URL` verifies it by default
#   plugin/helm3/mender-backup-<v>.tgz             the plugin for Helm 3 (the legacy manifest at the
#                                                  tarball's root, which Helm 3 needs; it verifies
#                                                  nothing: SHA256SUMS.asc does)
#   mender-backup-signing-key.gpg                  the public key that verifies all of it
#   SHA256SUMS (+ SHA256SUMS.asc)                  every file's sha256, signed
# The version is the one scripts/set-version.sh writes everywhere (tests/test_packaging.py);
# the key is MENDER_BACKUP_SIGNING_KEY (a name, e-mail or fingerprint in gpg's keyring,
# GNUPGHOME; without a passphrase, or with MENDER_BACKUP_SIGNING_PASSPHRASE_FILE).
# scripts/release.sh also sets CHART_DIR (the chart stamped with the pushed image's digest,
# packaged and bundled in the plugin instead of chart/) and DIST_EXTRA (a folder of more files
# for OUTDIR, summed and signed with the rest).
#   usage: scripts/dist.sh [OUTDIR]      helm 4: HELM (default: the test environment's helm4)
set -euo pipefail
root="$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/dist}")"
helm="${HELM:-$HOME/.cache/mender-backup-testenv/bin/helm4}"
key="${MENDER_BACKUP_SIGNING_KEY:?set MENDER_BACKUP_SIGNING_KEY to the signing key (gpg keyring)}"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/mender_backup/__init__.py")"
[[ -x $helm ]] || { echo "error: no helm 4 at $helm (set HELM, or run make test-env)" >&2; exit 2; }
passphrase=() gpg_passphrase=()
if [[ -n ${MENDER_BACKUP_SIGNING_PASSPHRASE_FILE:-} ]]; then
  passphrase=(--passphrase-file "$MENDER_BACKUP_SIGNING_PASSPHRASE_FILE")
  gpg_passphrase=(--pinentry-mode loopback --passphrase-file "$MENDER_BACKUP_SIGNING_PASSPHRASE_FILE")
fi

# OUTDIR is replaced: only when it is empty or an earlier dist (never a folder of other things)
if [[ -d $out && -n "$(ls -A "$out")" && ! -f $out/SHA256SUMS ]]; then
  echo "error: $out is not empty and holds no earlier dist (no SHA256SUMS): refusing to replace it" >&2; exit 2
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"; mkdir -p "$out/chart" "$out/plugin/helm3" "$out/plugin/helm4"
# helm signs from a keyring file: the secret key exported for this run only, removed on exit
gpg --batch --yes "${gpg_passphrase[@]}" --export-secret-keys "$key" > "$tmp/secring.gpg"
[[ -s $tmp/secring.gpg ]] || { echo "error: no secret key $key in gpg's keyring" >&2; exit 2; }
gpg --batch --yes --export "$key" > "$out/mender-backup-signing-key.gpg"

chart="${CHART_DIR:-$root/chart}"
"$helm" package "$chart" --destination "$out/chart" --sign --key "$key" --keyring "$tmp/secring.gpg" \
  "${passphrase[@]}" > /dev/null
CHART_DIR="$chart" "$root/scripts/plugin-dist.sh" "$tmp/helm4" current > /dev/null
"$helm" plugin package "$tmp/helm4/mender-backup" --destination "$out/plugin/helm4" --key "$key" \
  --keyring "$tmp/secring.gpg" "${passphrase[@]}" > /dev/null
CHART_DIR="$chart" "$root/scripts/plugin-dist.sh" "$tmp/helm3" legacy > /dev/null
# the files at the root, named without "./" (Helm 3's extractor would try to make "." again)
(cd "$tmp/helm3/mender-backup" && find . -mindepth 1 -maxdepth 1 -printf '%P\0' | sort -z |
  tar --null --files-from=- --sort=name --owner=0 --group=0 --numeric-owner \
      -czf "$out/plugin/helm3/mender-backup-$version.tgz")

[[ -z ${DIST_EXTRA:-} ]] || cp -r "$DIST_EXTRA/." "$out/"
cd "$out"
find . -type f ! -name 'SHA256SUMS*' -printf '%P\n' | sort | xargs sha256sum > SHA256SUMS
gpg --batch --yes "${gpg_passphrase[@]}" --local-user "$key" --armor --detach-sign SHA256SUMS
echo "mender-backup $version: $(wc -l < SHA256SUMS) files in $out, signed by $key"
