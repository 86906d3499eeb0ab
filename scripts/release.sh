#!/usr/bin/env bash
# A release, for `make release VERSION=x.y.z REGISTRY=host/org` (and CI's release workflow):
#   1. the image, one build per platform (RELEASE_PLATFORMS, default linux/amd64,linux/arm64)
#      into one manifest list, with podman; an SBOM of each (syft, SPDX JSON);
#   2. the list pushed to REGISTRY/mender-backup:VERSION with a cosign-format signature
#      (scripts/image-sign), its digest kept;
#   3. the chart with image.repository = REGISTRY/mender-backup and image.digest = that digest,
#      then `make dist`'s files from it (chart and plugin tarballs, signed, SHA256SUMS signed,
#      now also the SBOMs, the digest and the cosign public key);
#   4. the chart pushed as an OCI artifact, with its provenance file: REGISTRY/charts/mender-backup.
# Out: dist/ (OUT), whose RELEASE.md says what was published and how a user verifies each part.
#
# Keys: MENDER_BACKUP_SIGNING_KEY (gpg, as scripts/dist.sh), MENDER_BACKUP_COSIGN_KEY (a cosign
# key pair's private key: `cosign generate-key-pair`, or `image-sign keygen`; its public key
# beside it as .pub) and MENDER_BACKUP_COSIGN_PASSWORD_FILE. Registry credentials: podman's and helm's own logins
# (`podman login`, `helm registry login`); a registry on 127.0.0.1 or localhost is plain HTTP.
#   usage: scripts/release.sh VERSION REGISTRY      (make release sets PY, IMAGE_SIGN, SYFT, BASE)
set -euo pipefail
root="$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)"
fail() { echo "error: $*" >&2; exit 2; }
version="${1:?usage: release.sh VERSION REGISTRY}" registry="${2:?usage: release.sh VERSION REGISTRY}"
registry="${registry%/}"
out="$(realpath -m "${OUT:-$root/dist}")"
helm="${HELM:-$HOME/.cache/mender-backup-testenv/bin/helm4}"
py="${PY:-$root/.venv/bin/python}" image_sign="${IMAGE_SIGN:-$root/build/bin/image-sign}" syft="${SYFT:-syft}"
platforms="${RELEASE_PLATFORMS:-linux/amd64,linux/arm64}"
cosign_key="${MENDER_BACKUP_COSIGN_KEY:-}" cosign_pass="${MENDER_BACKUP_COSIGN_PASSWORD_FILE:-}"
cosign_pub="${cosign_key%.key}.pub"

tree="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/mender_backup/__init__.py")"
[[ $version == "$tree" ]] || fail "VERSION=$version but the tree is at $tree: run scripts/set-version.sh $version and commit it first"
[[ -n ${MENDER_BACKUP_SIGNING_KEY:-} ]] || fail "set MENDER_BACKUP_SIGNING_KEY (gpg key for the chart, plugin and SHA256SUMS)"
[[ -f $cosign_key && -f $cosign_pass ]] || fail "set MENDER_BACKUP_COSIGN_KEY and MENDER_BACKUP_COSIGN_PASSWORD_FILE (the image's cosign key)"
[[ -f $cosign_pub ]] || fail "no $cosign_pub: the cosign key pair's public key goes beside its private key"
for tool in "$helm" "$image_sign" "$(command -v "$syft" || echo "$syft")" "$(command -v podman || echo podman)"; do
  [[ -x $tool ]] || fail "$tool not found (make release builds image-sign and installs syft; helm: HELM)"
done
plain_http=()
case "$registry" in 127.0.0.1[:/]*|localhost[:/]*) plain_http=(--plain-http) ;; esac

# every platform first: a foreign one needs qemu's binfmt handler (make release-host)
arches=()
for p in ${platforms//,/ }; do
  case "$p" in linux/amd64) a=x86_64 ;; linux/arm64) a=aarch64 ;; *) fail "platform $p: linux/amd64 or linux/arm64" ;; esac
  if [[ $a != "$(uname -m)" && ! -e /proc/sys/fs/binfmt_misc/qemu-$a ]]; then
    fail "cannot build $p on this $(uname -m) machine: no qemu-$a binfmt handler (make release-host), or RELEASE_PLATFORMS=linux/$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')"
  fi
  arches+=("$p=$a")
done

tmp="$(mktemp -d)"; list="localhost/mender-backup-release:$version"; built=()
trap 'rm -rf "$tmp"; podman manifest rm "$list" >/dev/null 2>&1 || true; podman rmi "${built[@]}" >/dev/null 2>&1 || true' EXIT
podman manifest rm "$list" >/dev/null 2>&1 || true
mkdir -p "$tmp/extra/sbom" "$tmp/extra/image"

echo "== image: ${platforms}"
for pa in "${arches[@]}"; do
  p="${pa%%=*}" a="${pa#*=}"
  make -C "$root" --no-print-directory wheelhouse WHEEL_ARCH="$a" PY="$py" IMAGE_PYTHON="${IMAGE_PYTHON:-3.12}" >/dev/null
  one="localhost/mender-backup-release-$a:$version"
  podman build --quiet --network=none --platform "$p" --build-arg BASE="${BASE:-python:3.12-slim}" \
    --manifest "$list" --tag "$one" "$root" >/dev/null
  podman image prune --force --filter label=io.mender-backup.stage=builder >/dev/null
  # the SBOM of this platform's image (syft reads one image, not a list)
  podman save --quiet --format oci-archive -o "$tmp/$a.tar" "$one"
  built+=("$one")
  SYFT_CHECK_FOR_APP_UPDATE=false "$syft" scan --quiet "oci-archive:$tmp/$a.tar" \
    --source-name "$registry/mender-backup" --source-version "$version" \
    -o "spdx-json=$tmp/extra/sbom/mender-backup-$version-${p//\//-}.spdx.json"
  rm "$tmp/$a.tar"
done
podman manifest push --quiet --all "$list" "oci:$tmp/layout:$version" >/dev/null

echo "== push and sign: $registry/mender-backup:$version"
"$image_sign" push "$cosign_key" "$cosign_pass" "oci:$tmp/layout:$version" \
  "docker://$registry/mender-backup:$version" "$tmp/digest"
digest="$(cat "$tmp/digest")"
# the published key must verify what was pushed (a .pub of another pair would publish a lie)
"$image_sign" verify "$cosign_pub" "$registry/mender-backup@$digest" >/dev/null
echo "$registry/mender-backup@$digest" > "$tmp/extra/image/mender-backup-image.txt"
cp "$cosign_pub" "$tmp/extra/image/mender-backup-cosign.pub"

echo "== chart and plugin, stamped with $digest"
cp -r "$root/chart" "$tmp/chart"
"$py" - "$tmp/chart/values.yaml" "$registry/mender-backup" "$digest" <<'EOF'
import sys
from ruamel.yaml import YAML
yaml = YAML()
yaml.preserve_quotes, yaml.width = True, 4096
path, repository, digest = sys.argv[1:]
with open(path) as f:
    values = yaml.load(f)
values["image"]["repository"], values["image"]["digest"] = repository, digest
with open(path, "w") as f:
    yaml.dump(values, f)
EOF
key="$(sed 's/^/    /' "$cosign_pub")"
cat > "$tmp/extra/RELEASE.md" <<EOF
# mender-backup $version

- image: \`$registry/mender-backup@$digest\` (tag $version; ${platforms})
- chart: \`oci://$registry/charts/mender-backup --version $version\` (pins the image by digest)
- plugin: \`plugin/helm4/mender-backup-$version.tgz\` (Helm 4, with .prov), \`plugin/helm3/mender-backup-$version.tgz\`
- SBOMs (SPDX): \`sbom/\`; every file's sha256: \`SHA256SUMS\`, signed (\`SHA256SUMS.asc\`)

## Verify
    gpg --import mender-backup-signing-key.gpg && gpg --verify SHA256SUMS.asc SHA256SUMS && sha256sum -c SHA256SUMS
    cosign verify --key image/mender-backup-cosign.pub --insecure-ignore-tlog=true $registry/mender-backup@$digest
    helm pull oci://$registry/charts/mender-backup --version $version --verify --keyring mender-backup-signing-key.gpg

The cosign public key:

$key
EOF
CHART_DIR="$tmp/chart" DIST_EXTRA="$tmp/extra" HELM="$helm" "$root/scripts/dist.sh" "$out"

echo "== chart pushed: oci://$registry/charts/mender-backup"
"$helm" push "$out/chart/mender-backup-$version.tgz" "oci://$registry/charts" "${plain_http[@]}"

echo "released mender-backup $version: $registry/mender-backup@$digest, oci://$registry/charts/mender-backup:$version, $out"
